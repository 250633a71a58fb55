"""Priority sort (Graves, Wayne & Danihelka 2014, "Neural Turing Machines", §4.5, arXiv:1410.5401).

N random `bits`-bit vectors (20 in the paper), each with a scalar priority drawn uniformly from [-1, 1] on
its own channel; after a delimiter the model must output the K highest-priority vectors (16 of 20 in the
paper), highest first. The knob `length` is N; K = round(N * keep_fraction) with keep_fraction = 16/20.

Worked example, bits=2, N=3, K=2 (channels: bits, priority, delimiter; `.`: ignored):

    step     1             2             3             4 (delim)   5        6
    input  [1 0 -0.5 0]  [0 1 0.9 0]  [1 1 0.1 0]  [0 0 0 1]    0        0
    target    .             .             .             .        [0 1]   [1 1]
    mask      0             0             0             0         1        1

T = N + 1 + K. Loss: binary cross-entropy on the answer; metrics as copy (sequence accuracy is primary).
"""

from __future__ import annotations

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, BitTask


class PrioritySort(BitTask):
    def __init__(
        self,
        bits: int = 8,
        length: int = 20,
        keep_fraction: float = 0.8,
        eval_lengths: tuple[int, ...] = (20, 30, 40),
    ) -> None:
        if bits < 1 or length < 1 or not 0 < keep_fraction <= 1:
            raise OptionsError("priority_sort: need bits >= 1, length >= 1 and 0 < keep_fraction <= 1.")
        self.bits, self.keep_fraction = bits, keep_fraction
        self.input_size, self.output_size = bits + 2, bits
        self.train_lengths = (length, length)
        self.eval_lengths = tuple(sorted(set(eval_lengths) | {length}))

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        g, dev, B, N, c = generator, generator.device, batch_size, length, self.bits
        K = max(1, round(N * self.keep_fraction))
        vectors = torch.randint(0, 2, (B, N, c), generator=g, device=dev).float()
        priority = torch.rand(B, N, generator=g, device=dev) * 2 - 1
        order = priority.argsort(dim=1, descending=True)[:, :K]  # (B, K) highest first
        T = N + 1 + K
        inputs = torch.zeros(B, T, c + 2, device=dev)
        inputs[:, :N, :c] = vectors
        inputs[:, :N, c] = priority
        inputs[:, N, c + 1] = 1.0
        targets = torch.zeros(B, T, c, device=dev)
        targets[:, N + 1 :] = vectors.gather(1, order.unsqueeze(-1).expand(-1, -1, c))
        mask = torch.zeros(B, T, dtype=torch.bool, device=dev)
        mask[:, N + 1 :] = True
        return Batch(inputs, targets, mask)

    def chance(self, length: int) -> dict[str, float]:
        keep = max(1, round(length * self.keep_fraction))
        return {
            "accuracy": 2.0 ** -(self.bits * keep),
            "bit_accuracy": 0.5,
            "cost_bits": float(self.bits * keep),
        }
