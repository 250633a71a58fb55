"""Binary multiplication (context-sensitive; Delétang et al. 2023, NNCH `tasks/cs/binary_multiplication.py`).

Two little-endian binary numbers around the separator 2 (drawn as for binary_addition); the output is their
product in little-endian binary without leading zeros, then the termination token 2, padded with 0s to n
steps (the product has at most n - 1 digits), scored up to the termination token. (n <= 2: NNCH's
placeholder answer, n - 1 zeros.)

Worked example, n = 9: 001 * 01101 is 4 * 22 = 88 = 0001101 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6  7  8  9   10 11 12 13 14 15 16 17 18
    input    0  0  1  2  0  1  1  0  1   ?  ?  ?  ?  ?  ?  ?  ?  ?
    target   .  .  .  .  .  .  .  .  .   0  0  0  1  1  0  1  2  0
    mask     0  0  0  0  0  0  0  0  0   1  1  1  1  1  1  1  1  0

Chance: 1/3 per token (a uniform guess).
"""

from __future__ import annotations

import torch

from seqbench.tasks.chomsky.base import ChomskyTask, python_rng
from seqbench.tasks.chomsky.binary_arithmetic import to_binary, two_operands

END = 2


class BinaryMultiplication(ChomskyTask):
    level = "cs"
    symbols, classes = 3, 3
    termination = END

    def output_length(self, length: int) -> int:
        return length

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        rng = python_rng(generator)
        xs, ys = [], []
        for _ in range(batch_size):
            if length <= 2:
                x, result = to_binary(rng.randrange(2**length - 1), length), [0] * (length - 1)
            else:
                x, n, m = two_operands(rng, length)
                result = to_binary(n * m, 0)
            xs.append(x)
            ys.append([*result, END] + [0] * (length - 1 - len(result)))
        return torch.tensor(xs), torch.tensor(ys)
