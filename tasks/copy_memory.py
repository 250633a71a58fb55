"""Copy memory (Arjovsky, Shah & Bengio 2016, "Unitary Evolution Recurrent Neural Networks", arXiv:1511.06464;
after Hochreiter & Schmidhuber 1997).

Ten symbols drawn from 8 (tokens 1..8), then T blanks (token 0) less one, a delimiter (token 9), and ten
more blanks during which the model must reproduce the ten symbols. Every one of the T + 20 steps is
scored: blank is the target everywhere but the last ten steps. The knob `length` is T.

Worked example with 3 symbols instead of 10 and T = 4 (targets are next to inputs; all steps scored):

    step     1  2  3  4  5  6  7 (delim)  8  9  10
    input    5  2  7  0  0  0  9          0  0  0
    target   0  0  0  0  0  0  0          5  2  7

A memoryless model that predicts blank until the end and then a uniform guess costs
10·log(8)/(T + 20) nats per step: the baseline the paper draws. Primary `accuracy`: all ten symbols right.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, ClassificationTask


class CopyMemory(ClassificationTask):
    input_kind = "tokens"
    presets: ClassVar[dict[str, dict]] = {
        "quick": {"steps": 3000, "batch_size": 32, "eval_every": 200, "eval_size": 128},
        "paper": {"steps": 20_000, "batch_size": 20, "eval_every": 500, "eval_size": 1000},
    }

    def __init__(
        self,
        T: int = 100,
        symbols: int = 8,
        copy_length: int = 10,
        eval_lengths: tuple[int, ...] | None = None,
    ):
        if T < 1 or symbols < 2 or copy_length < 1:
            raise OptionsError("copy_memory: need T >= 1, symbols >= 2, copy_length >= 1.")
        self.symbols, self.copy_length = symbols, copy_length
        self.blank, self.delimiter = 0, symbols + 1
        self.input_size = self.output_size = symbols + 2  # blank, symbols 1..S, delimiter
        self.train_lengths = (T, T)
        self.eval_lengths = tuple(sorted(set(eval_lengths or (T, 2 * T, 5 * T)) | {T}))

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        g, dev, B, K = generator, generator.device, batch_size, self.copy_length
        data = torch.randint(1, self.symbols + 1, (B, K), generator=g, device=dev)
        total = length + 2 * K
        inputs = torch.zeros(B, total, dtype=torch.long, device=dev)
        inputs[:, :K] = data
        inputs[:, K + length - 1] = self.delimiter
        targets = torch.zeros(B, total, dtype=torch.long, device=dev)
        targets[:, -K:] = data
        return Batch(inputs, targets, torch.ones(B, total, dtype=torch.bool, device=dev))

    @torch.no_grad()
    def metrics(self, outputs: torch.Tensor, batch: Batch) -> dict[str, float]:
        m = super().metrics(outputs, batch)
        m["cross_entropy"] = float(self.loss(outputs, batch))
        return m

    def chance(self, length: int) -> dict[str, float]:
        return {
            "accuracy": self.symbols**-self.copy_length,
            "cross_entropy": self.copy_length * math.log(self.symbols) / (length + 2 * self.copy_length),
        }
