"""Modular arithmetic with brackets (deterministic context-free; Delétang et al. 2023, NNCH
`tasks/dcf/modular_arithmetic_brackets.py`).

A random bracketed expression of exactly n characters over the residues mod 5 and + and - (NNCH's default
`mult=False`), built by NNCH's recursive grammar (see `expressions.py`); the answer is its value mod 5.
Tokens: digits 0..4, + 5, - 6, * 7, ( 8, ) 9 (NNCH's vocabulary of 11 also holds x and =, unused here).

Worked example, n = 7 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6  7  8
    input    (  (  3  )  -  4  )  ?        (3) - 4 = -1
    target   .  .  .  .  .  .  .  4        -1 mod 5

Chance: 1/5.
"""

from __future__ import annotations

import torch

from seqbench.tasks.chomsky.base import ChomskyTask, python_rng
from seqbench.tasks.chomsky.expressions import expression

MODULUS = 5
TOKENS = {"+": 5, "-": 6, "*": 7, "(": 8, ")": 9, **{str(d): d for d in range(MODULUS)}}


class ModularArithmeticBrackets(ChomskyTask):
    level = "dcf"
    symbols, classes = MODULUS + 6, MODULUS

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        rng = python_rng(generator)
        pairs = [expression(rng, MODULUS, length) for _ in range(batch_size)]
        x = torch.tensor([[TOKENS[c] for c in s] for s, _ in pairs])
        return x, torch.tensor([[v] for _, v in pairs])
