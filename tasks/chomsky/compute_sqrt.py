"""Compute sqrt (context-sensitive; Delétang et al. 2023, NNCH `tasks/cs/compute_sqrt.py`).

A number uniform in 1..2^n - 1 written big-endian with n binary digits; the output is the floor of its
square root, big-endian with ceil(n / 2) digits.

Worked example, n = 6: 100101 = 37, floor(sqrt(37)) = 6 = 110 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6   7  8  9
    input    1  0  0  1  0  1   ?  ?  ?
    target   .  .  .  .  .  .   1  1  0

Chance: 1/2 per token.
"""

from __future__ import annotations

import math

import torch

from seqbench.tasks.chomsky.base import ChomskyTask, python_rng
from seqbench.tasks.chomsky.binary_arithmetic import to_binary


class ComputeSqrt(ChomskyTask):
    level = "cs"
    symbols, classes = 2, 2

    def output_length(self, length: int) -> int:
        return math.ceil(length / 2)

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        rng = python_rng(generator)
        numbers = [rng.randint(1, 2**length - 1) for _ in range(batch_size)]
        x = [to_binary(v, length, little_endian=False) for v in numbers]
        y = [to_binary(math.isqrt(v), self.output_length(length), little_endian=False) for v in numbers]
        return torch.tensor(x), torch.tensor(y)
