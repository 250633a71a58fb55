"""Parity check (regular; Delétang et al. 2023, NNCH `tasks/regular/parity_check.py`).

A binary string; class 1 if it holds an odd number of 1s, else 0.

Worked example, n = 7 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6  7  8
    input    1  0  1  0  1  0  0  ?        three 1s: odd
    target   .  .  .  .  .  .  .  1

Chance: 1/2.
"""

from __future__ import annotations

import torch

from seqbench.tasks.chomsky.base import ChomskyTask


class ParityCheck(ChomskyTask):
    level = "regular"
    symbols, classes = 2, 2

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        x = torch.randint(0, 2, (batch_size, length), generator=generator, device=generator.device)
        return x, x.sum(1, keepdim=True) % 2
