"""Missing duplicate string (context-sensitive; Delétang et al. 2023, NNCH `tasks/cs/missing_duplicate_string.py`).

A binary string w of n // 2 symbols is written twice, ww, with the symbol at one uniform position replaced
by the placeholder 2; an odd n adds the padding token 3 at the end. The answer is the missing symbol.
(n = 1: NNCH's placeholder, the input 1 answered 1.)

Worked example, n = 9 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6  7  8  9  10
    input    0  1  1  0  0  1  2  0  3  ?      w = 0110; the 7th symbol is missing
    target   .  .  .  .  .  .  .  .  .  1

Chance: 1/2.
"""

from __future__ import annotations

import torch

from seqbench.tasks.chomsky.base import ChomskyTask

MISSING, PAD = 2, 3


class MissingDuplicateString(ChomskyTask):
    level = "cs"
    symbols, classes = 4, 2

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        g, dev, B = generator, generator.device, batch_size
        if length == 1:
            ones = torch.ones(B, 1, dtype=torch.long, device=dev)
            return ones, ones
        w = torch.randint(0, 2, (B, length // 2), generator=g, device=dev)
        ww = torch.cat([w, w], dim=1)
        where = torch.randint(0, ww.shape[1], (B, 1), generator=g, device=dev)
        y = ww.gather(1, where)
        x = ww.scatter(1, where, MISSING)
        pad = torch.full((B, length % 2), PAD, dtype=torch.long, device=dev)
        return torch.cat([x, pad], dim=1), y
