"""Bucket sort (context-sensitive; Delétang et al. 2023, NNCH `tasks/cs/bucket_sort.py`).

A string over 5 symbols; output it sorted in increasing order.

Worked example, n = 8 (`?`: the answer token, `.`: ignored):

    step     1  2  3  4  5  6  7  8    9 10 11 12 13 14 15 16
    input    1  0  2  0  4  1  1  2    ?  ?  ?  ?  ?  ?  ?  ?
    target   .  .  .  .  .  .  .  .    0  0  1  1  1  2  2  4

Chance: 1/5 per token (a uniform guess).
"""

from __future__ import annotations

import torch

from seqbench.tasks.chomsky.base import ChomskyTask

VOCAB = 5


class BucketSort(ChomskyTask):
    level = "cs"
    symbols, classes = VOCAB, VOCAB

    def output_length(self, length: int) -> int:
        return length

    def generate(self, batch_size: int, length: int, generator: torch.Generator):
        x = torch.randint(0, VOCAB, (batch_size, length), generator=generator, device=generator.device)
        return x, x.sort(dim=1).values
