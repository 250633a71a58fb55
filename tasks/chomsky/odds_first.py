"""Odds first (context-sensitive; Delétang et al. 2023, NNCH `tasks/cs/odds_first.py`).

A binary string s_1 .. s_n; output the symbols at even 1-based positions first, then those at odd ones:
s_2 s_4 ... s_1 s_3 ... . This is what NNCH's code computes (`[:, 1::2]` then `[:, ::2]`), and so what its
published figures measure; its docstring describes the opposite order (s_1 s_3 ... first). Both orders are
the same task up to a fixed permutation of the answer.

Worked example, n = 8 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6  7  8    9 10 11 12 13 14 15 16
    input    0  0  1  1  0  1  0  1    ?  ?  ?  ?  ?  ?  ?  ?
    target   .  .  .  .  .  .  .  .    0  1  1  1  0  1  0  0

Chance: 1/2 per token.
"""

from __future__ import annotations

import torch

from seqbench.tasks.chomsky.base import ChomskyTask


class OddsFirst(ChomskyTask):
    level = "cs"
    symbols, classes = 2, 2

    def output_length(self, length: int) -> int:
        return length

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        x = torch.randint(0, 2, (batch_size, length), generator=generator, device=generator.device)
        return x, torch.cat([x[:, 1::2], x[:, ::2]], dim=1)
