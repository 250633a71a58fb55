"""Cycle navigation (regular; Delétang et al. 2023, NNCH `tasks/regular/cycle_navigation.py`).

Moves on a cycle of 5 positions, starting at 0: token 0 steps left (-1), 1 stays, 2 steps right (+1) (NNCH
draws a in {0, 1, 2} and moves by a - 1). The answer is the final position, sum(a - 1) mod 5.

Worked example, n = 5 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6
    input    2  0  1  0  0  ?         +1 -1 0 -1 -1 = -2
    target   .  .  .  .  .  3         -2 mod 5

Chance: 1/5.
"""

from __future__ import annotations

import torch

from seqbench.tasks.chomsky.base import ChomskyTask

CYCLE = 5


class CycleNavigation(ChomskyTask):
    level = "regular"
    symbols, classes = 3, CYCLE

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        x = torch.randint(0, 3, (batch_size, length), generator=generator, device=generator.device)
        return x, (x - 1).sum(1, keepdim=True) % CYCLE
