"""Copy (Graves, Wayne & Danihelka 2014, "Neural Turing Machines", §4.1, arXiv:1410.5401).

Store a sequence of random bit vectors, then reproduce it after a delimiter. Worked example, bits=3, L=2
(channels are the columns, the last input channel is the delimiter flag; `.` is ignored by the loss):

    step        1        2        3 (delim)  4        5
    inputs   [1 0 1 0] [0 1 1 0] [0 0 0 1] [0 0 0 0] [0 0 0 0]
    targets     .        .        .       [1 0 1]  [0 1 1]
    mask        0        0        0          1        1

Sequences have T = 2L + 1 steps. Loss: binary cross-entropy on the answer phase only. Metrics: bit errors
per sequence after thresholding at 0.5 (the paper's "cost in bits" is the cross-entropy, `cost_bits`),
sequence accuracy (the primary `accuracy`: no bit wrong) and bit accuracy. Predicting 0.5 everywhere costs
`bits * L` bits per sequence. Trained on L in 1..20, evaluated at 10, 20, 30, 50, 120 as in the paper.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, BitTask


class Copy(BitTask):
    presets: ClassVar[dict[str, dict]] = {
        "quick": {"steps": 4000, "batch_size": 32, "eval_every": 100, "eval_size": 128},
        "paper": {"steps": 200_000, "batch_size": 1, "eval_every": 1000, "eval_size": 256},
    }

    def __init__(
        self,
        bits: int = 8,
        min_length: int = 1,
        max_length: int = 20,
        eval_lengths: tuple[int, ...] = (10, 20, 30, 50, 120),
    ) -> None:
        if bits < 1:
            raise OptionsError(f"copy: bits must be >= 1, got {bits}.")
        if not 1 <= min_length <= max_length:
            raise OptionsError(f"copy: need 1 <= min_length <= max_length, got {min_length}..{max_length}.")
        if not eval_lengths or min(eval_lengths) < 1:
            raise OptionsError(f"copy: eval_lengths must be positive lengths, got {eval_lengths}.")
        self.bits = bits
        self.input_size = bits + 1  # + delimiter channel
        self.output_size = bits
        self.train_lengths = (min_length, max_length)
        self.eval_lengths = tuple(sorted(set(eval_lengths) | {max_length}))

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        if length < 1:
            raise OptionsError(f"copy: length must be >= 1, got {length}.")
        device = generator.device
        L, T = length, 2 * length + 1
        seq = torch.randint(0, 2, (batch_size, L, self.bits), generator=generator, device=device).float()
        inputs = torch.zeros(batch_size, T, self.input_size, device=device)  # (B, T, bits+1)
        inputs[:, :L, : self.bits] = seq
        inputs[:, L, self.bits] = 1.0  # delimiter
        targets = torch.zeros(batch_size, T, self.bits, device=device)  # (B, T, bits)
        targets[:, L + 1 :] = seq
        mask = torch.zeros(batch_size, T, dtype=torch.bool, device=device)
        mask[:, L + 1 :] = True
        return Batch(inputs, targets, mask)

    def chance(self, length: int) -> dict[str, float]:
        # 0.5 everywhere: one bit of cross-entropy per target bit; a sequence is right by luck with 2^-(bits*L).
        return {
            "accuracy": 2.0 ** (-self.bits * length),
            "bit_accuracy": 0.5,
            "cost_bits": float(self.bits * length),
        }
