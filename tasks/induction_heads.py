"""Induction heads (Olsson et al. 2022, "In-context Learning and Induction Heads"; the synthetic form of
Gu & Dao 2023, "Mamba", §4.1.2, arXiv:2312.00752).

A random token sequence over `vocab` symbols holds, at a random position, a special trigger token followed by
a target token B. The sequence ends with the trigger again; the model must answer B ("... T B ... T -> B").

Worked example, vocab {0..4}, trigger `t`, length 8 (`.`: ignored):

    step     1  2  3  4  5  6  7  8
    input    3  t  1  4  0  2  4  t
    target   .  .  .  .  .  .  .  1
    mask     0  0  0  0  0  0  0  1

The knob `length` is the sequence length; trained at 256 by default and evaluated up to 16x longer, as
Mamba does. Primary `accuracy`: the answer right. Chance: 1/vocab.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, ClassificationTask, answer_at_end


class InductionHeads(ClassificationTask):
    input_kind = "tokens"
    presets: ClassVar[dict[str, dict]] = {
        "quick": {"steps": 2000, "batch_size": 32, "eval_every": 200, "eval_size": 256},
        "paper": {"steps": 50_000, "batch_size": 8, "eval_every": 1000, "eval_size": 1024},
    }

    def __init__(self, length: int = 256, vocab: int = 16, eval_lengths: tuple[int, ...] | None = None):
        if vocab < 2:
            raise OptionsError("induction_heads: vocab must be >= 2.")
        lengths = tuple(sorted(set(eval_lengths or (length, 4 * length, 16 * length)) | {length}))
        if min(lengths) < 4:
            raise OptionsError("induction_heads: sequences need at least 4 steps (trigger, answer, trigger).")
        self.vocab, self.trigger = vocab, vocab
        self.input_size, self.output_size = vocab + 1, vocab
        self.train_lengths = (length, length)
        self.eval_lengths = lengths

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        g, dev, B = generator, generator.device, batch_size
        inputs = torch.randint(0, self.vocab, (B, length), generator=g, device=dev)
        where = torch.randint(0, length - 2, (B,), generator=g, device=dev)  # trigger at `where`, B after it
        rows = torch.arange(B, device=dev)
        inputs[rows, where] = self.trigger
        inputs[:, -1] = self.trigger
        return answer_at_end(inputs, inputs[rows, where + 1])

    def chance(self, length: int) -> dict[str, float]:
        return {"accuracy": 1 / self.vocab}
