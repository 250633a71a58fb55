"""Random bracketed modular expressions, NNCH's `generate_one_expression_and_result` (shared by
`modular_arithmetic_brackets` and `solve_equation`; not a task)."""

from __future__ import annotations

import random


def expression(rng: random.Random, modulus: int, length: int, mult: bool = False) -> tuple[str, int]:
    """A string of exactly `length` characters over digits, + - (*) ( ) and its value mod `modulus`.

    Lengths 1..4 give d, -d, (d), (-d); longer ones split into (left op right) with the left part's length
    uniform in 1..length-4, as NNCH does."""
    if length < 1:
        raise ValueError(f"Can't generate expressions of length < 1. Got {length}.")
    if length <= 4:
        d = rng.randrange(modulus)
        return [(f"{d}", d), (f"-{d}", -d % modulus), (f"({d})", d), (f"(-{d})", -d % modulus)][length - 1]
    left = rng.randrange(1, length - 3)
    left_str, left_val = expression(rng, modulus, left, mult)
    right_str, right_val = expression(rng, modulus, length - left - 3, mult)
    op = rng.randrange(3 if mult else 2)
    if op == 0:
        return f"({left_str}+{right_str})", (left_val + right_val) % modulus
    if op == 1:
        return f"({left_str}-{right_str})", (left_val - right_val) % modulus
    return f"({left_str}*{right_str})", (left_val * right_val) % modulus
