"""Repeat copy (Graves, Wayne & Danihelka 2014, "Neural Turing Machines", §4.2, arXiv:1410.5401; encoding of
loudinthecloud/pytorch-ntm `tasks/repeatcopytask.py`).

A sequence of L random `bits`-bit vectors, a delimiter step (channel `bits`), then a step of its own carrying
the repeat count R on channel `bits + 1`, z-scored as pytorch-ntm does: (R - mean) / std over the uniform
training range 1..max_repeats (mean 5.5, std sqrt((10^2 - 1)/12) = 2.87 for 1..10). The model must output
the sequence R times, then raise an end marker (an extra output channel) on the step after the last repeat.
L and R are each drawn from 1..10 in training (R once per batch, as pytorch-ntm draws both per batch); the
knob `length` is L, and evaluation beyond the training lengths also draws R up to `eval_max_repeats`.

Worked example, bits=2, L=2, R=2 (channels: bits, delimiter, repeat count; `.`: ignored by the loss;
z = (2 - 5.5) / 2.87 = -1.22):

    step     1        2        3        4           5       6       7       8       9
    input  [1 0 0 0] [0 1 0 0] [0 0 1 0] [0 0 0 -1.22]  0       0       0       0       0
    target    .        .        .         .        [1 0 0] [0 1 0] [1 0 0] [0 1 0] [0 0 1]  (last: end)
    mask      0        0        0         0          1       1       1       1       1

T = L + 2 + R L + 1. Loss: binary cross-entropy over the answer (the end channel included). Metrics as copy:
sequence accuracy (primary), bit errors, bit accuracy, cost in bits.

`variant="seqbench"` is the form seqbench used before (task version 1): the delimiter and the count R /
max_repeats on the same step, T = L + 1 + R L + 1.
"""

from __future__ import annotations

from typing import Literal

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, BitTask


class RepeatCopy(BitTask):
    version = 2  # 1: delimiter and count R / max_repeats on one step

    def __init__(
        self,
        bits: int = 8,
        min_length: int = 1,
        max_length: int = 10,
        max_repeats: int = 10,
        eval_max_repeats: int = 20,
        eval_lengths: tuple[int, ...] = (10, 20),
        variant: Literal["pytorch-ntm", "seqbench"] = "pytorch-ntm",
    ) -> None:
        if variant not in ("pytorch-ntm", "seqbench"):
            raise OptionsError(f"repeat_copy: variant must be 'pytorch-ntm' or 'seqbench', got {variant!r}.")
        self.variant = variant
        if bits < 1 or not 1 <= min_length <= max_length or max_repeats < 1 or eval_max_repeats < 1:
            raise OptionsError("repeat_copy: need bits >= 1, 1 <= min_length <= max_length, repeats >= 1.")
        self.bits, self.max_repeats, self.eval_max_repeats = bits, max_repeats, eval_max_repeats
        self.input_size, self.output_size = bits + 2, bits + 1
        self.train_lengths = (min_length, max_length)
        self.eval_lengths = tuple(sorted(set(eval_lengths) | {max_length}))

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        g, dev, B, L, c = generator, generator.device, batch_size, length, self.bits
        longest = self.max_repeats if length <= self.train_lengths[1] else self.eval_max_repeats
        R = int(torch.randint(1, longest + 1, (1,), generator=g, device=dev).item())
        seq = torch.randint(0, 2, (B, L, c), generator=g, device=dev).float()
        count = 1 if self.variant == "pytorch-ntm" else 0  # the repeat count's own step
        T = L + 1 + count + R * L + 1
        inputs = torch.zeros(B, T, c + 2, device=dev)
        inputs[:, :L, :c] = seq
        inputs[:, L, c] = 1.0
        if self.variant == "pytorch-ntm":
            lo, hi = 1, self.max_repeats
            mean, std = (hi + lo) / 2, (((hi - lo + 1) ** 2 - 1) / 12) ** 0.5
            inputs[:, L + 1, c + 1] = (R - mean) / std
        else:
            inputs[:, L, c + 1] = R / self.max_repeats
        start = L + 1 + count  # the answer phase
        targets = torch.zeros(B, T, c + 1, device=dev)
        targets[:, start : T - 1, :c] = seq.repeat(1, R, 1)
        targets[:, T - 1, c] = 1.0  # end marker
        mask = torch.zeros(B, T, dtype=torch.bool, device=dev)
        mask[:, start:] = True
        return Batch(inputs, targets, mask)

    def chance(self, length: int) -> dict[str, float]:
        # Guessing every output bit (bits + end marker over R L + 1 answer steps); R = 1 is the most generous.
        return {"accuracy": 2.0 ** -((self.bits + 1) * (length + 1)), "bit_accuracy": 0.5}
