"""Duplicate string (context-sensitive; Delétang et al. 2023, NNCH `tasks/cs/duplicate_string.py`).

A binary string w; output ww.

Worked example, n = 3 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6  7  8  9
    input    1  0  1  ?  ?  ?  ?  ?  ?
    target   .  .  .  1  0  1  1  0  1

Chance: 1/2 per token.
"""

from __future__ import annotations

import torch

from seqbench.tasks.chomsky.base import ChomskyTask


class DuplicateString(ChomskyTask):
    level = "cs"
    symbols, classes = 2, 2

    def output_length(self, length: int) -> int:
        return 2 * length

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        x = torch.randint(0, 2, (batch_size, length), generator=generator, device=generator.device)
        return x, torch.cat([x, x], dim=1)
