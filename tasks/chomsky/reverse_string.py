"""Reverse string (deterministic context-free; Delétang et al. 2023, NNCH `tasks/dcf/reverse_string.py`).

A binary string; output it reversed.

Worked example, n = 4 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6  7  8
    input    0  1  1  1  ?  ?  ?  ?
    target   .  .  .  .  1  1  1  0
    mask     0  0  0  0  1  1  1  1

Chance: 1/2 per token.
"""

from __future__ import annotations

import torch

from seqbench.tasks.chomsky.base import ChomskyTask


class ReverseString(ChomskyTask):
    level = "dcf"
    symbols, classes = 2, 2

    def output_length(self, length: int) -> int:
        return length

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        x = torch.randint(0, 2, (batch_size, length), generator=generator, device=generator.device)
        return x, x.flip(1)
