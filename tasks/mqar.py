"""Multi-query associative recall (Arora et al. 2023, "Zoology: Measuring and Improving Recall in Efficient
Language Models", arXiv:2312.04927).

N key-value pairs (keys from the lower half of a `vocab`-token vocabulary, values from the upper half; keys
distinct) open the sequence; later, each key appears once more at a random position among filler tokens, and
the model must emit its value there. Every other position is ignored.

Worked example, N = 2, sequence length 8 (`_`: filler, `.`: ignored):

    step     1   2   3   4   5   6   7   8
    input    k3  v9  k1  v6  _   k1  _   k3
    target   .   .   .   .   .   v6  .   v9
    mask     0   0   0   0   0   1   0   1

The knob `length` is N; the sequence has max(seq_len, 4N) steps. Defaults follow Zoology: vocab 8192,
seq_len 64; trained on N in 4..16, evaluated beyond. Primary `accuracy`: every query right; also
`token_accuracy` (fraction of queries right). Chance: 1/(vocab/2) per query.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, ClassificationTask


class MQAR(ClassificationTask):
    input_kind = "tokens"
    presets: ClassVar[dict[str, dict]] = {
        "quick": {"steps": 2000, "batch_size": 32, "eval_every": 200, "eval_size": 256},
        "paper": {"steps": 20_000, "batch_size": 64, "eval_every": 1000, "eval_size": 1000},
    }

    def __init__(
        self,
        vocab: int = 8192,
        seq_len: int = 64,
        min_pairs: int = 4,
        max_pairs: int = 16,
        eval_lengths: tuple[int, ...] = (16, 32, 64),
    ) -> None:
        if not 1 <= min_pairs <= max_pairs:
            raise OptionsError(f"mqar: need 1 <= min_pairs <= max_pairs, got {min_pairs}..{max_pairs}.")
        if vocab // 2 - 1 < max(max_pairs, *eval_lengths):
            raise OptionsError(
                f"mqar: {max(max_pairs, *eval_lengths)} distinct keys need vocab >= "
                f"{2 * (max(max_pairs, *eval_lengths) + 1)}, got {vocab}."
            )
        self.vocab, self.seq_len = vocab, seq_len
        self.filler = 0  # keys are 1..vocab/2 - 1, values vocab/2..vocab - 1
        self.input_size = self.output_size = vocab
        self.train_lengths = (min_pairs, max_pairs)
        self.eval_lengths = tuple(sorted(set(eval_lengths) | {max_pairs}))

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        g, dev, B, N = generator, generator.device, batch_size, length
        half = self.vocab // 2
        T = max(self.seq_len, 4 * N)
        keys = torch.rand(B, half - 1, generator=g, device=dev).argsort(dim=1)[:, :N] + 1  # distinct keys
        values = torch.randint(half, self.vocab, (B, N), generator=g, device=dev)
        inputs = torch.full((B, T), self.filler, dtype=torch.long, device=dev)
        inputs[:, 0 : 2 * N : 2], inputs[:, 1 : 2 * N : 2] = keys, values
        # Each key queried once, at distinct random positions after the pairs, in random order.
        slots = torch.rand(B, T - 2 * N, generator=g, device=dev).argsort(dim=1)[:, :N] + 2 * N
        inputs.scatter_(1, slots, keys)
        targets = torch.zeros(B, T, dtype=torch.long, device=dev)
        targets.scatter_(1, slots, values)
        mask = torch.zeros(B, T, dtype=torch.bool, device=dev)
        mask.scatter_(1, slots, True)
        return Batch(inputs, targets, mask)

    def chance(self, length: int) -> dict[str, float]:
        return {"accuracy": (2 / self.vocab) ** length, "token_accuracy": 2 / self.vocab}
