"""Running parity: after each bit, the parity of all bits so far.

step     1  2  3  4
input    1  0  1  1
target   1  1  0  1
mask     1  1  1  1
"""

from __future__ import annotations

import torch

from seqbench.tasks.base import Batch, BitTask


class RunningParity(BitTask):
    def __init__(self, max_length: int = 8) -> None:
        self.input_size = self.output_size = 1
        self.train_lengths = (2, max_length)
        self.eval_lengths = (max_length, 2 * max_length)

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        bits = torch.randint(0, 2, (batch_size, length, 1), generator=generator, device=generator.device)
        parity = bits.cumsum(dim=1) % 2
        mask = torch.ones(batch_size, length, dtype=torch.bool, device=generator.device)
        return Batch(bits.float(), parity.float(), mask)

    def chance(self, length: int) -> dict[str, float]:
        return {"accuracy": 2.0**-length, "bit_accuracy": 0.5}
