"""Selective copy (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", §4.1.1,
arXiv:2312.00752; generator: athms/mad-lab `mad/data/instances.py`, `generate_selective_copying_instance`).

The default (`variant="mad"`) is MAD's: a vocabulary of `vocab` (16) tokens holds `vocab - 2` (14) data
symbols, a blank and a copy token. `data_tokens` (16) data symbols are drawn with replacement; the
`length - 2 K - 1` blanks are inserted each before a uniformly chosen data token (`np.insert` at indices
0..K-1), so blanks fall only before data tokens and the last data token always sits next to the copy
token; then one copy token and K blanks, during which the model answers the K data tokens in order.
`length` is MAD's `seq_len`, the whole sequence.

Worked example, K = 3, length 10 (b = blank, c = copy token, `.`: ignored):

    step     1  2  3  4  5  6  7  8  9  10
    input    b  4  b  b  9  2  c  b  b  b       3 blanks, each before one of the data tokens
    target   .  .  .  .  .  .  .  4  9  2
    mask     0  0  0  0  0  0  0  1  1  1

MAD draws the insertion indices from NumPy's global RNG (its line 556), not from the generator it is
given; here every draw comes from the run's generator. Primary `accuracy`: every data token right; also
`token_accuracy`. Chance: 1/(vocab - 2) per token.

`variant="seqbench"` is the form seqbench used before (task version 1): `vocab` data symbols, noise and a
marker token; the data at K uniform positions of a span of `length` noise tokens (the last data token may be
far from the end), then K markers during the answer; T = length + K.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, ClassificationTask


class SelectiveCopy(ClassificationTask):
    version = 2  # 1: data at uniform positions of a noise span, markers during the answer, vocab data symbols
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
        variant: Literal["mad", "seqbench"] = "mad",
        eval_lengths: tuple[int, ...] | None = None,
    ):
        if variant not in ("mad", "seqbench"):
            raise OptionsError(f"selective_copy: variant must be 'mad' or 'seqbench', got {variant!r}.")
        self.variant = variant
        self.symbols = vocab - 2 if variant == "mad" else vocab
        if self.symbols < 2 or data_tokens < 1:
            raise OptionsError("selective_copy: need at least 2 data symbols and data_tokens >= 1.")
        lengths = tuple(sorted(set(eval_lengths or (length, 2 * length, 4 * length)) | {length}))
        shortest = 2 * data_tokens + 2 if variant == "mad" else data_tokens  # MAD: seq_len > 2 K + 1
        if min(lengths) < shortest:
            raise OptionsError(
                f"selective_copy: {data_tokens} data tokens need length >= {shortest}, got {min(lengths)}."
            )
        self.vocab, self.data_tokens = vocab, data_tokens
        if variant == "mad":
            self.noise, self.marker = vocab - 2, vocab - 1  # MAD's blank and copy token
            self.input_size = self.output_size = vocab
        else:
            self.noise, self.marker = vocab, vocab + 1  # data symbols are 0..vocab-1
            self.input_size, self.output_size = vocab + 2, vocab
        self.train_lengths = (length, length)
        self.eval_lengths = lengths

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        if self.variant == "seqbench":
            return self._sample_v1(batch_size, length, generator)
        g, dev, B, K = generator, generator.device, batch_size, self.data_tokens
        blanks = length - 2 * K - 1
        if blanks < 1:
            raise OptionsError(f"selective_copy: MAD needs length > {2 * K + 1}, got {length}.")
        data = torch.randint(0, self.symbols, (B, K), generator=g, device=dev)
        # Each blank goes before data token j, j uniform in 0..K-1: counts per gap, then the data positions.
        before = torch.randint(0, K, (B, blanks), generator=g, device=dev)
        per_gap = torch.zeros(B, K, dtype=torch.long, device=dev).scatter_add_(
            1, before, torch.ones_like(before)
        )
        positions = per_gap.cumsum(1) + torch.arange(K, device=dev)  # (B, K)
        inputs = torch.full((B, length), self.noise, dtype=torch.long, device=dev)
        inputs.scatter_(1, positions, data)
        inputs[:, length - K - 1] = self.marker  # the copy token; K blanks follow
        targets = torch.zeros(B, length, dtype=torch.long, device=dev)
        targets[:, length - K :] = data
        mask = torch.zeros(B, length, dtype=torch.bool, device=dev)
        mask[:, length - K :] = True
        return Batch(inputs, targets, mask)

    def _sample_v1(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
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
        return {"accuracy": self.symbols**-self.data_tokens, "token_accuracy": 1 / self.symbols}
