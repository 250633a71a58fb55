"""Even pairs (regular; Delétang et al. 2023, NNCH `tasks/regular/even_pairs.py`).

A binary string; class 1 if the number of unequal neighbours ("01" and "10") is odd, else 0 (equivalently:
whether the first and last symbols differ).

Worked example, n = 7 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6  7  8
    input    0  1  0  1  0  0  1  ?        5 unequal pairs: odd
    target   .  .  .  .  .  .  .  1

Chance: 1/2.
"""

from __future__ import annotations

import torch

from seqbench.tasks.chomsky.base import ChomskyTask


class EvenPairs(ChomskyTask):
    level = "regular"
    symbols, classes = 2, 2

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        x = torch.randint(0, 2, (batch_size, length), generator=generator, device=generator.device)
        y = (x[:, :-1] != x[:, 1:]).sum(1, keepdim=True) % 2
        return x, y
