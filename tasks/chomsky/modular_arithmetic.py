"""Modular arithmetic without brackets (regular; Delétang et al. 2023, NNCH `tasks/regular/modular_arithmetic.py`).

An expression a_0 o_1 a_1 ... o_k a_k of residues mod 5 and operators +, -, * (drawn uniformly), evaluated
with the usual precedence (* before + and -) mod 5. Tokens: residues 0..4, then + 5, - 6, * 7, and NNCH's
unused blank `_` 8. An even length n is cut to n - 1, as NNCH does: expressions have odd length.

Worked example, n = 7 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6  7  8
    input    1  -  2  *  3  +  4  ?       1 - 2*3 + 4 = -1
    target   .  .  .  .  .  .  .  4       -1 mod 5

(tokens shown as symbols: `-` is 6, `*` 7, `+` 5). Chance: 1/5.
"""

from __future__ import annotations

import torch

from seqbench.tasks.chomsky.base import ChomskyTask

MODULUS = 5
PLUS, MINUS, TIMES = MODULUS, MODULUS + 1, MODULUS + 2


def evaluate(expressions: torch.Tensor) -> torch.Tensor:
    """Values mod 5 of expressions (B, 2k + 1) with precedence: a running sum and the current product term."""
    total = torch.zeros(expressions.shape[0], dtype=torch.long, device=expressions.device)
    term = expressions[:, 0].clone()
    for i in range(1, expressions.shape[1], 2):
        op, a = expressions[:, i], expressions[:, i + 1]
        times = op == TIMES
        total = torch.where(times, total, (total + term) % MODULUS)
        term = torch.where(times, term * a, torch.where(op == MINUS, -a, a)) % MODULUS
    return ((total + term) % MODULUS).unsqueeze(1)


class ModularArithmetic(ChomskyTask):
    level = "regular"
    symbols, classes = MODULUS + 4, MODULUS

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        g, dev = generator, generator.device
        n = length if length % 2 == 1 else length - 1
        residues = torch.randint(0, MODULUS, (batch_size, n // 2 + 1), generator=g, device=dev)
        ops = torch.tensor([PLUS, TIMES, MINUS], device=dev)[
            torch.randint(0, 3, (batch_size, n // 2), generator=g, device=dev)
        ]
        x = torch.empty(batch_size, n, dtype=torch.long, device=dev)
        x[:, ::2], x[:, 1::2] = residues, ops
        return x, evaluate(x)
