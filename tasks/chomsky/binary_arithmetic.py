"""Binary numbers as NNCH writes them (shared by binary_addition, binary_multiplication and compute_sqrt;
not a task)."""

from __future__ import annotations

import random


def to_binary(number: int, digits: int, little_endian: bool = True) -> list[int]:
    """`number` in binary, zero-filled to `digits` (no effect if it needs more; `digits=0` gives no padding)."""
    bits = f"{number:b}".zfill(digits)
    return [int(b) for b in (bits[::-1] if little_endian else bits)]


def two_operands(rng: random.Random, length: int) -> tuple[list[int], int, int]:
    """NNCH's operands for an expression of `length` >= 3 tokens: lengths l_n uniform in 1..length-2 and
    l_m = length - 1 - l_n, values uniform in 1..2^l - 1, written little-endian with l digits around the
    separator 2. Returns the expression and the two values."""
    ln = rng.randrange(1, length - 1)
    lm = length - 1 - ln
    n, m = rng.randint(1, 2**ln - 1), rng.randint(1, 2**lm - 1)
    return [*to_binary(n, ln), 2, *to_binary(m, lm)], n, m
