"""The default torch thread count of a CPU run: whichever of 1 and N threads is faster here, now.

Measured on a 2-core machine (`seqbench run --task copy --model ntm`, PERF-NOTES.md): quiet, torch's default
2 threads were 1.24x faster than 1; with one competing busy process, 2 threads ran 3.7x *slower* than 1 (their
OpenMP threads spin while waiting for a core the other process holds), and under heavier load 10x slower.
Neither fixed choice is within 20% of the better one in both situations, so a run that was not given
`--threads` decides for itself:

1. `OMP_WAIT_POLICY=PASSIVE` (set by the CLI before torch loads, unless the user set it): waiting OpenMP
   threads sleep instead of spinning, so an oversubscribed machine costs much less (`seqbench.cli.main`).
2. A probe in the warm-up steps (left out of tokens/s anyway): after one untimed step, steps alternate
   between 1 and N threads (`ThreadProbe.rounds` each); the setting with the smaller fastest step time wins
   and keeps running. The fastest of a few is the figure least disturbed by a momentary competitor. The
   probe costs no extra steps: the probe steps are ordinary training steps (the thread count changes the
   speed, not what is computed, beyond float rounding). The row's `threads` column records the choice.
"""

from __future__ import annotations

import torch


class ThreadProbe:
    """Chooses between 1 and `torch.get_num_threads()` threads over the first training steps.

    Call `before_step()` before each step and `after_step(seconds)` after it; `threads` is the count that
    runs (the choice once `done`)."""

    def __init__(self, rounds: int = 2, many: int | None = None) -> None:
        self.many = many or torch.get_num_threads()
        self.rounds = rounds
        self.active = self.many > 1
        self.times: dict[int, list[float]] = {1: [], self.many: []}
        self._step = 0
        self.threads = self.many
        self.done = not self.active

    def before_step(self) -> None:
        if self.done:
            return
        # step 0: untimed warm-up at N threads (first-use costs); then 1, N, 1, N, ...
        self.threads = self.many if self._step == 0 or self._step % 2 == 0 else 1
        torch.set_num_threads(self.threads)

    def after_step(self, seconds: float) -> None:
        if self.done:
            return
        if self._step > 0:
            self.times[self.threads].append(seconds)
        self._step += 1
        if all(len(t) >= self.rounds for t in self.times.values()):
            self.threads = min(self.times, key=lambda n: (min(self.times[n]), n))
            torch.set_num_threads(self.threads)
            self.done = True

    @property
    def steps(self) -> int:
        """Training steps the probe takes (1 untimed + `rounds` per setting), 0 when there is no choice."""
        return 1 + 2 * self.rounds if self.active else 0
