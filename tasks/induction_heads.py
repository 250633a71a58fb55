"""Induction heads (Olsson et al. 2022, "In-context Learning and Induction Heads"; the synthetic form of
Gu & Dao 2023, "Mamba", §4.1.2, arXiv:2312.00752; generator: HazyResearch/safari
`src/dataloaders/synthetics.py`, `generate_induction_head`).

The default (`variant="safari"`) is safari's: `length` random data tokens (safari's `vocab_size` counts its two
special tokens, so `vocab` 16 leaves 14 data symbols); at a uniform position p in 0..length-3 the trigger
`=>` is written and the token after it is the target B; the trigger is appended at the end, then B. The
model reads that sequence shifted by one and is trained on next-token prediction at every position (safari's
training labels are never masked); only the last position, the answer B after the final trigger, is scored
(safari's test labels are -100 elsewhere).

Worked example, 14 data symbols, trigger `t`, length 7 (`.`: in the loss, not scored):

    step     1  2  3  4  5  6  7  8
    input    3  t  1  4  0  2  4  t
    target   t  1  4  0  2  4  t  1        the next token everywhere (the loss); step 8 answers B = 1
    mask     0  0  0  0  0  0  0  1        what `accuracy` scores

The knob `length` is the number of data tokens (T = length + 1); trained at 256 by default and evaluated up to
16x longer, as Mamba does. Primary `accuracy`: the answer right. Chance: 1/(data symbols).

`variant="seqbench"` is the form seqbench used before (task version 1): `vocab` data symbols plus the trigger,
`length` steps in all, trained on the last step only.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, ClassificationTask, answer_at_end


class InductionHeads(ClassificationTask):
    version = 2  # 1: trained on the last step only; `vocab` data symbols plus the trigger
    input_kind = "tokens"
    presets: ClassVar[dict[str, dict]] = {
        "quick": {"steps": 2000, "batch_size": 32, "eval_every": 200, "eval_size": 256},
        "paper": {"steps": 50_000, "batch_size": 8, "eval_every": 1000, "eval_size": 1024},
    }

    def __init__(
        self,
        length: int = 256,
        vocab: int = 16,
        variant: Literal["safari", "seqbench"] = "safari",
        eval_lengths: tuple[int, ...] | None = None,
    ):
        if variant not in ("safari", "seqbench"):
            raise OptionsError(f"induction_heads: variant must be 'safari' or 'seqbench', got {variant!r}.")
        self.variant = variant
        self.data = vocab - 2 if variant == "safari" else vocab  # safari's vocab holds `=>` and `.`
        if self.data < 2:
            raise OptionsError(f"induction_heads: need at least 2 data symbols, got vocab {vocab}.")
        lengths = tuple(sorted(set(eval_lengths or (length, 4 * length, 16 * length)) | {length}))
        if min(lengths) < 4:
            raise OptionsError("induction_heads: sequences need at least 4 steps (trigger, answer, trigger).")
        self.vocab, self.trigger = vocab, self.data
        self.input_size = vocab if variant == "safari" else vocab + 1
        self.output_size = vocab  # safari: its whole vocabulary; seqbench: the data symbols
        self.train_lengths = (length, length)
        self.eval_lengths = lengths

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        g, dev, B = generator, generator.device, batch_size
        rows = torch.arange(B, device=dev)
        if self.variant == "seqbench":
            inputs = torch.randint(0, self.data, (B, length), generator=g, device=dev)
            where = torch.randint(0, length - 2, (B,), generator=g, device=dev)
            inputs[rows, where] = self.trigger
            inputs[:, -1] = self.trigger
            return answer_at_end(inputs, inputs[rows, where + 1])
        seq = torch.randint(0, self.data, (B, length + 2), generator=g, device=dev)  # (B, L + 2)
        where = torch.randint(0, length - 2, (B,), generator=g, device=dev)
        seq[rows, where] = self.trigger
        seq[:, length] = self.trigger
        seq[:, length + 1] = seq[rows, where + 1]
        inputs, targets = seq[:, :-1], seq[:, 1:]  # next-token prediction, (B, L + 1)
        mask = torch.zeros_like(inputs, dtype=torch.bool)
        mask[:, -1] = True
        return Batch(inputs, targets, mask)

    def read_positions(self, batch: Batch) -> torch.Tensor | None:
        """seqbench's form is scored at its last step only; safari's loss reads every step."""
        return batch.mask if self.variant == "seqbench" else None

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        if self.variant == "seqbench":
            return super().loss(outputs, batch)
        return torch.nn.functional.cross_entropy(outputs.flatten(0, 1), batch.targets.flatten())  # every step

    def chance(self, length: int) -> dict[str, float]:
        return {"accuracy": 1 / self.data}
