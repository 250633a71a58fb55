"""Selective copy (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", §4.1.1,
arXiv:2312.00752).

`data_tokens` (16) tokens drawn from a vocabulary of `vocab` (16) data symbols are scattered, in order, at
random positions of a span of `length` noise tokens; then `data_tokens` marker tokens ask for them back, in
order. Unlike copy, the gaps vary, so a model must select by content rather than by time.

Worked example, 3 data tokens over a span of 6 (n = noise, m = marker, `.`: ignored):

    step     1  2  3  4  5  6  7  8  9
    input    n  4  n  n  9  2  m  m  m
    target   .  .  .  .  .  .  4  9  2
    mask     0  0  0  0  0  0  1  1  1

Primary `accuracy`: every data token right; also `token_accuracy`. Chance: 1/vocab per token.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, ClassificationTask


class SelectiveCopy(ClassificationTask):
    input_kind = "tokens"
    presets: ClassVar[dict[str, dict]] = {
        "quick": {"steps": 3000, "batch_size": 32, "eval_every": 200, "eval_size": 128},
        "paper": {"steps": 400_000, "batch_size": 64, "eval_every": 5000, "eval_size": 1024},
    }

    def __init__(
        self,
        length: int = 64,
        vocab: int = 16,
        data_tokens: int = 16,
        eval_lengths: tuple[int, ...] | None = None,
    ):
        if vocab < 2 or data_tokens < 1:
            raise OptionsError("selective_copy: need vocab >= 2 and data_tokens >= 1.")
        lengths = tuple(sorted(set(eval_lengths or (length, 2 * length, 4 * length)) | {length}))
        if min(lengths) < data_tokens:
            raise OptionsError(
                f"selective_copy: {data_tokens} data tokens do not fit in a span of {min(lengths)}."
            )
        self.vocab, self.data_tokens = vocab, data_tokens
        self.noise, self.marker = vocab, vocab + 1  # data symbols are 0..vocab-1
        self.input_size, self.output_size = vocab + 2, vocab
        self.train_lengths = (length, length)
        self.eval_lengths = lengths

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        g, dev, B, K = generator, generator.device, batch_size, self.data_tokens
        if length < K:
            raise OptionsError(f"selective_copy: {K} data tokens do not fit in a span of {length}.")
        data = torch.randint(0, self.vocab, (B, K), generator=g, device=dev)
        # K distinct sorted positions per row: the K smallest of random keys.
        positions = torch.rand(B, length, generator=g, device=dev).argsort(dim=1)[:, :K].sort(dim=1).values
        inputs = torch.full((B, length + K), self.noise, dtype=torch.long, device=dev)
        inputs.scatter_(1, positions, data)
        inputs[:, length:] = self.marker
        targets = torch.zeros(B, length + K, dtype=torch.long, device=dev)
        targets[:, length:] = data
        mask = torch.zeros(B, length + K, dtype=torch.bool, device=dev)
        mask[:, length:] = True
        return Batch(inputs, targets, mask)

    def chance(self, length: int) -> dict[str, float]:
        return {"accuracy": self.vocab**-self.data_tokens, "token_accuracy": 1 / self.vocab}
