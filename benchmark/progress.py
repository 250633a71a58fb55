"""Progress for a run: a rich bar on a terminal, periodic plain lines otherwise (CI logs, files).

rich prints nothing until the end when stdout is not a terminal, so a log would show no progress at all.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RunProgress:
    """Context manager; `update(state, evaluated)` is the runner's progress callback."""

    def __init__(
        self, label: str, total_steps: int, console: Console | None = None, plain_every_s: float = 10.0
    ):
        self.console = console or Console()
        self.label = label
        self.total = total_steps
        self.plain_every_s = plain_every_s
        self._last_line = 0.0
        self._bar: Progress | None = None

    def __enter__(self) -> RunProgress:
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "loss {task.fields[loss]:.4f}  acc {task.fields[acc]}  {task.fields[tps]:,.0f} tok/s"
                ),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, loss=float("nan"), acc="-", tps=0.0)
        else:
            self.console.print(
                f"{self.label}: training for up to {self.total} steps", highlight=False, soft_wrap=True
            )
        self._start = self._first_step_done = time.perf_counter()
        return self

    def update(self, state: Any, evaluated: bool) -> None:
        acc = "-" if state.accuracy != state.accuracy else f"{state.accuracy:.3f}"
        if self._bar is not None:
            self._bar.update(
                self._task, completed=state.step, loss=state.loss, acc=acc, tps=state.tokens_per_s
            )
            return
        now = time.perf_counter()
        if evaluated or now - self._last_line >= self.plain_every_s or state.step == self.total:
            self._last_line = now
            if state.step == 1:
                self._first_step_done = now  # the first step carries start-up costs: leave it out of the ETA
            done = state.step - 1
            eta = (now - self._first_step_done) / done * (self.total - state.step) if done > 0 else None
            self.console.print(
                f"{self.label}: step {state.step}/{self.total}  loss {state.loss:.4f}  acc {acc}  "
                f"{state.tokens_per_s:,.0f} tok/s  elapsed {now - self._start:.0f}s  "
                f"ETA {'-' if eta is None else f'{eta:.0f}s'}",
                highlight=False,
                soft_wrap=True,
            )
            self.console.file.flush()  # a pipe or file is block-buffered: make each line show up now

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()


class SweepProgress:
    """One display for a whole sweep: runs done / running / failed and an ETA on a terminal; one plain
    line per finished run otherwise (so a CI log shows progress as it happens)."""

    def __init__(self, total: int, console: Console | None = None, grid: tuple[str, ...] = ()) -> None:
        self.console = console or Console()
        self.grid = tuple(grid)  # the sweep's grid keys: each line names its grid point
        self.total, self.done, self.failed, self.running = total, 0, 0, 0
        self._bar: Progress | None = None

    def __enter__(self) -> SweepProgress:
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]sweep"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("running {task.fields[running]}  failed {task.fields[failed]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._bar.start()
            self._task = self._bar.add_task("sweep", total=self.total, running=0, failed=0)
        self._start = time.perf_counter()
        return self

    def add(self, n: int) -> None:
        """n more runs to do (a study's total grows as its climbs move on)."""
        self.total += n
        if self._bar is not None:
            self._bar.update(self._task, total=self.total)

    def event(self, kind: str, config: Any, outcome: Any) -> None:
        """An executor's event: ("start", config, None) or ("done", config, Outcome)."""
        from seqbench.sweep import describe

        if kind == "start":
            self.running += 1
        else:
            self.running -= 1
            self.done += 1
            self.failed += not outcome.ok
            if self._bar is None:
                acc = outcome.accuracy
                tail = (
                    f"accuracy {acc:.3f}"
                    if isinstance(acc, float)
                    else (outcome.error or "").splitlines()[0][:120]
                )
                self.console.print(
                    f"[{self.done}/{self.total}] {describe(config, self.grid)}: {outcome.status}  {tail}  "
                    f"({time.perf_counter() - self._start:.0f}s, {self.failed} failed)",
                    highlight=False,
                    soft_wrap=True,
                )
                self.console.file.flush()
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, running=self.running, failed=self.failed)

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.stop()
