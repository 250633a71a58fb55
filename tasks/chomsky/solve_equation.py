"""Solve equation (deterministic context-free; Delétang et al. 2023, NNCH `tasks/dcf/solve_equation.py`).

A bracketed expression over residues mod 5 with + and - (no *, so the solution is unique) of n - 2
characters, one of whose digits is replaced by the unknown x, then `=` and the expression's value: the
answer is the replaced digit. The digit is the first at or after a uniform position (wrapping round), as in
NNCH. Tokens: digits 0..4, + 5, - 6, ( 7, ) 8, x 9, = 10. (n < 3: NNCH's placeholder, zeros answered 0.)

Worked example, n = 9 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6  7  8  9  10
    input    (  (  x  )  -  4  )  =  4  ?      (x) - 4 = 4  ->  x = 3
    target   .  .  .  .  .  .  .  .  .  3

Chance: 1/5.
"""

from __future__ import annotations

import torch

from seqbench.tasks.chomsky.base import ChomskyTask, python_rng
from seqbench.tasks.chomsky.expressions import expression

MODULUS = 5
TOKENS = {"+": 5, "-": 6, "(": 7, ")": 8, "x": 9, "=": 10, **{str(d): d for d in range(MODULUS)}}


class SolveEquation(ChomskyTask):
    level = "dcf"
    symbols, classes = MODULUS + 6, MODULUS

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        if length < 3:
            return torch.zeros(batch_size, length, dtype=torch.long), torch.zeros(
                batch_size, 1, dtype=torch.long
            )
        rng = python_rng(generator)
        xs, ys = [], []
        for _ in range(batch_size):
            expr, value = expression(rng, MODULUS, length - 2)
            i = rng.randrange(len(expr))
            while not expr[i].isdigit():
                i = (i + 1) % (length - 2)
            xs.append([TOKENS[c] for c in f"{expr[:i]}x{expr[i + 1 :]}={value}"])
            ys.append([int(expr[i])])
        return torch.tensor(xs), torch.tensor(ys)
