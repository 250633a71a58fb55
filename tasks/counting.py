"""Counting languages (Joulin & Mikolov 2015, "Inferring Algorithmic Patterns with Stack-Augmented Recurrent
Nets", arXiv:1503.01007): a^n b^n, a^n b^n c^n, a^n b^n c^n d^n and a^n b^2n, by next-symbol prediction.

A sequence is one string between a start symbol S and an end symbol E. Only the predictable symbols are
scored: once the first b has appeared, every following symbol (and the end) is determined by n. A sequence
counts as right only if every predictable symbol is (the paper's criterion).

Worked example, a^n b^n with n = 3 (each step predicts the next input; `.`: not predictable, ignored):

    step     1  2  3  4  5  6  7  8
    input    S  a  a  a  b  b  b  E
    target   .  .  .  .  b  b  E  .
    mask     0  0  0  0  1  1  1  0

The knob `length` is n: trained on 1..20, tested up to 59 as in the paper (one n per batch here).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, ClassificationTask

S, E = 0, 1  # then a=2, b=3, c=4, d=5
_BLOCKS = {"anbn": (1, 1), "anbncn": (1, 1, 1), "anbncndn": (1, 1, 1, 1), "anb2n": (1, 2)}


class Counting(ClassificationTask):
    input_kind = "tokens"
    stochastic = False  # one string per n: the generator is not needed
    presets: ClassVar[dict[str, dict]] = {
        "quick": {"steps": 2000, "batch_size": 32, "eval_every": 200, "eval_size": 128},
        "paper": {"steps": 100_000, "batch_size": 1, "eval_every": 2000, "eval_size": 256},
    }

    def __init__(
        self,
        language: Literal["anbn", "anbncn", "anbncndn", "anb2n"] = "anbn",
        min_n: int = 1,
        max_n: int = 20,
        eval_lengths: tuple[int, ...] = (10, 20, 30, 40, 59),
    ) -> None:
        if not 1 <= min_n <= max_n or min(eval_lengths) < 1:
            raise OptionsError(
                f"counting: need 1 <= min_n <= max_n and positive eval lengths, got {min_n}..{max_n}."
            )
        self.language = language
        self.blocks = _BLOCKS[language]
        self.input_size = self.output_size = 2 + len(self.blocks)
        self.train_lengths = (min_n, max_n)
        self.eval_lengths = tuple(sorted(set(eval_lengths) | {max_n}))

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        n, dev = length, generator.device
        parts = [torch.tensor([S])]
        parts += [torch.full((k * n,), 2 + i) for i, k in enumerate(self.blocks)]
        parts.append(torch.tensor([E]))
        string = torch.cat(parts).to(dev)  # (T,) identical for the batch: the task is deterministic given n
        T = string.shape[0]
        inputs = string.expand(batch_size, T).clone()
        targets = torch.zeros(batch_size, T, dtype=torch.long, device=dev)
        targets[:, :-1] = inputs[:, 1:]
        mask = torch.zeros(batch_size, T, dtype=torch.bool, device=dev)
        mask[:, 1 + n : T - 1] = True  # from the first b (it predicts the second) to the step that predicts E
        return Batch(inputs, targets, mask)

    def chance(self, length: int) -> dict[str, float]:
        # Without counting, nothing tells where a block ends: the best memoryless guess ("the same symbol
        # again") misses every block boundary, so no sequence is ever fully right.
        return {"accuracy": 0.0}
