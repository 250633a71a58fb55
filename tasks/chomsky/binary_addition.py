"""Binary addition (context-sensitive; Delétang et al. 2023, NNCH `tasks/cs/binary_addition.py`).

Two little-endian binary numbers around the separator 2 (operand lengths and values as NNCH draws them, see
`binary_arithmetic.two_operands`); the output is their sum in little-endian binary without leading zeros,
then the termination token 2, padded with 0s to n + 1 steps, scored up to the termination token. (n <= 2:
one number in 0..2^n - 2 written with n digits, answered as itself, as NNCH does.)

Worked example, n = 9: 001 + 01101 is 4 + 22 = 26 = 01011 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6  7  8  9   10 11 12 13 14 15 16 17 18 19
    input    0  0  1  2  0  1  1  0  1   ?  ?  ?  ?  ?  ?  ?  ?  ?  ?
    target   .  .  .  .  .  .  .  .  .   0  1  0  1  1  2  0  0  0  0
    mask     0  0  0  0  0  0  0  0  0   1  1  1  1  1  1  0  0  0  0

Chance: 1/3 per token (a uniform guess).
"""

from __future__ import annotations

import torch

from seqbench.tasks.chomsky.base import ChomskyTask, python_rng
from seqbench.tasks.chomsky.binary_arithmetic import to_binary, two_operands

END = 2


class BinaryAddition(ChomskyTask):
    level = "cs"
    symbols, classes = 3, 3
    termination = END

    def output_length(self, length: int) -> int:
        return length + 1

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        rng = python_rng(generator)
        xs, ys = [], []
        for _ in range(batch_size):
            if length <= 2:
                number = rng.randrange(2**length - 1)
                x, result = to_binary(number, length), to_binary(number, 0)
            else:
                x, n, m = two_operands(rng, length)
                result = to_binary(n + m, 0)
            xs.append(x)
            ys.append([*result, END] + [0] * (length - len(result)))
        return torch.tensor(xs), torch.tensor(ys)
