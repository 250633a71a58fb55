"""Stack manipulation (deterministic context-free; Delétang et al. 2023, NNCH `tasks/dcf/stack_manipulation.py`).

The input is a stack of 0s and 1s given bottom to top (length s uniform in 1..n-1), then n - s actions,
POP (2), PUSH 0 (3), PUSH 1 (4), drawn uniformly; a POP on an empty stack does nothing. The output is the
final stack top to bottom, then the termination token 2, padded with 0s to n + 1 steps; it is scored up to
and including the termination token. (n = 1: one bit, answered as itself, as NNCH does.)

Worked example, n = 7 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6  7   8  9 10 11 12 13 14 15
    input    0  1  1  0  4  2  2   ?  ?  ?  ?  ?  ?  ?  ?      stack 0110; PUSH 1, POP, POP -> 011
    target   .  .  .  .  .  .  .   1  1  0  2  0  0  0  0      top to bottom, end, padding
    mask     0  0  0  0  0  0  0   1  1  1  1  0  0  0  0

Chance: 1/3 per token (a uniform guess).
"""

from __future__ import annotations

import torch

from seqbench.tasks.chomsky.base import ChomskyTask, python_rng

POP, PUSH0, PUSH1, END = 2, 3, 4, 2


class StackManipulation(ChomskyTask):
    level = "dcf"
    symbols, classes = 5, 3
    termination = END

    def output_length(self, length: int) -> int:
        return length + 1

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        rng = python_rng(generator)
        xs, ys = [], []
        for _ in range(batch_size):
            if length == 1:
                x = [rng.randrange(2)]
                stack = list(x)
            else:
                s = rng.randrange(1, length)
                stack = [rng.randrange(2) for _ in range(s)]
                actions = [rng.randrange(2, 5) for _ in range(length - s)]
                x = stack + actions
                stack = list(stack)
                for a in actions:
                    if a == POP:
                        if stack:
                            stack.pop()
                    else:
                        stack.append(a - PUSH0)
            y = [*stack[::-1], END]
            xs.append(x)
            ys.append(y + [0] * (length + 1 - len(y)))
        return torch.tensor(xs), torch.tensor(ys)
