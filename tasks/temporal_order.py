"""Temporal order (Hochreiter & Schmidhuber 1997, "Long Short-Term Memory", experiments 6a and 6b).

Sequences of 100..110 symbols start with E and end with B; in between, random distractors from {a, b, c, d},
except at two (6a) or three (6b) random positions in fixed windows, which hold X or Y. The class of the
sequence is the order of those symbols (XX, XY, YX, YY: 4 classes; 8 with three). The target is given at
the last step only. Windows (for the paper's T = 100): [10, 20] and [50, 60]; with three relevant symbols
[10, 20], [33, 43] and [66, 76]. The knob `length` is T: windows scale with it, lengths are drawn from
[T, T + T/10] (once per batch here).

Worked example, two relevant symbols, T = 10 (windows scaled: steps 2 and 6 here):

    step     1  2  3  4  5  6  7  8  9  10
    input    E  X  c  a  d  Y  b  a  c  B
    target   .  .  .  .  .  .  .  .  .  XY (class 1 of 4)
    mask     0  0  0  0  0  0  0  0  0  1

Primary `accuracy`: the class right. Chance: 1/4 (or 1/8).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, ClassificationTask, answer_at_end

_WINDOWS = {2: ((10, 20), (50, 60)), 3: ((10, 20), (33, 43), (66, 76))}  # for T = 100, 1-based
A, B_, C, D, E, B_END, X, Y = range(8)  # token ids: distractors a b c d, start E, end B, X, Y


class TemporalOrder(ClassificationTask):
    input_kind = "tokens"
    presets: ClassVar[dict[str, dict]] = {
        "quick": {"steps": 2000, "batch_size": 32, "eval_every": 200, "eval_size": 256},
        "paper": {"steps": 50_000, "batch_size": 1, "eval_every": 1000, "eval_size": 2000},
    }

    def __init__(self, T: int = 100, relevant: int = 2, eval_lengths: tuple[int, ...] | None = None):
        if relevant not in _WINDOWS:
            raise OptionsError(
                f"temporal_order: relevant must be 2 (experiment 6a) or 3 (6b), got {relevant}."
            )
        lengths = tuple(sorted(set(eval_lengths or (T, 2 * T, 4 * T)) | {T}))
        if min(lengths) < 20:
            raise OptionsError("temporal_order: T must be >= 20 so that the windows stay apart.")
        self.relevant = relevant
        self.input_size, self.output_size = 8, 2**relevant
        self.train_lengths = (T, T)
        self.eval_lengths = lengths

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        g, dev, B = generator, generator.device, batch_size
        T = int(torch.randint(length, length + length // 10 + 1, (1,), generator=g, device=dev).item())
        inputs = torch.randint(A, D + 1, (B, T), generator=g, device=dev)
        inputs[:, 0], inputs[:, -1] = E, B_END
        label = torch.zeros(B, dtype=torch.long, device=dev)
        for lo, hi in _WINDOWS[self.relevant]:
            lo_t, hi_t = max(1, lo * length // 100), max(1, hi * length // 100)  # scale windows, keep 1-based
            pos = torch.randint(lo_t, hi_t + 1, (B,), generator=g, device=dev) - 1
            is_y = torch.randint(0, 2, (B,), generator=g, device=dev)
            inputs[torch.arange(B, device=dev), pos] = X + is_y
            label = label * 2 + is_y  # XX=0, XY=1, YX=2, YY=3 (binary, first symbol most significant)
        return answer_at_end(inputs, label)

    def chance(self, length: int) -> dict[str, float]:
        return {"accuracy": 1 / self.output_size}
