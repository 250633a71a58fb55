"""The report's first screen: each stored study's heatmap of accuracy over models x rungs, its horizon
table (models x tasks) and accuracy against learning rate (seqbench.study)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from seqbench.tables import Table


@dataclass
class Heatmap:
    """Accuracy over rows (models) x columns (task, rung); NaN where a rung was not run. `solved` marks the
    rungs whose mean meets the ladder's criterion; `groups` are the column spans of each task."""

    title: str
    rows: list[str]
    columns: list[str]
    values: list[list[float]]
    solved: list[list[bool]]
    groups: list[tuple[str, int, int]] = field(default_factory=list)  # (task, first column, last + 1)
    caption: str = ""

    def render_svg(self) -> str:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        import numpy as np

        data = np.array(self.values, dtype=float)
        width = max(7.2, 0.55 * len(self.columns) + 2.5)
        height = max(3.0, 0.32 * len(self.rows) + 1.6)
        with plt.rc_context({"svg.fonttype": "path", "font.size": 8}):
            f, ax = plt.subplots(figsize=(width, height))
            cmap = plt.get_cmap("viridis").with_extremes(bad="#eeeeee")
            ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0, vmax=1, aspect="auto")
            for i in range(len(self.rows)):
                for j in range(len(self.columns)):
                    v = data[i, j]
                    if math.isnan(v):
                        ax.text(j, i, "·", ha="center", va="center", color="#999999")
                        continue
                    bold = self.solved[i][j]
                    ax.text(
                        j,
                        i,
                        f"{v:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        fontweight="bold" if bold else "normal",
                        color="black" if v > 0.6 else "white",
                    )
            ax.set_xticks(range(len(self.columns)), self.columns, rotation=0)
            ax.set_yticks(range(len(self.rows)), self.rows)
            for _, start, _end in self.groups[1:]:
                ax.axvline(start - 0.5, color="white", linewidth=3)
            top = ax.secondary_xaxis("top")
            top.set_xticks([(s + e - 1) / 2 for _, s, e in self.groups], [t for t, _, _ in self.groups])
            top.tick_params(length=0)
            ax.set_title(self.title, pad=22)
            f.tight_layout()
            buf = io.StringIO()
            f.savefig(buf, format="svg")
            plt.close(f)
        svg = buf.getvalue()
        return svg[svg.index("<svg") :]


def study_sections(results_dir: str, runs: pd.DataFrame) -> tuple[list[Any], set[str]]:
    """For each study stored under `results_dir`: a heatmap section (the report opens with it), the
    horizon table, and accuracy against learning rate per task; and the run_ids the studies read."""
    from seqbench.report import Figure, Line, Section
    from seqbench.study import CAPPED_NOTE, Study, horizon_table, run_ids, stored_studies, wall_time

    sections: list[Any] = []
    used: set[str] = set()
    for spec in stored_studies(results_dir):
        pairs = Study(spec).pairs(runs)
        used |= run_ids(pairs)
        if not any(p.lr_rows and any(p.lr_rows.values()) for p in pairs):
            continue
        by = {(p.task, p.model): p for p in pairs}
        columns, values, solved, groups = [], [], [], []
        for task, ladder in spec.tasks.items():
            groups.append((task, len(columns), len(columns) + len(ladder.rungs)))
            columns += [str(r) for r in ladder.rungs]
        for model in spec.models:
            vrow, srow = [], []
            for task, ladder in spec.tasks.items():
                rungs = {json_key(r.value): r for r in by[(task, model)].rungs if r.rows}
                for value in ladder.rungs:
                    rung = rungs.get(json_key(value))
                    vrow.append(rung.accuracy if rung else float("nan"))
                    srow.append(bool(rung and rung.solved))
            values.append(vrow)
            solved.append(srow)
        knobs = ", ".join(f"{t}: {ladder.knob}" for t, ladder in spec.tasks.items())
        heat = Heatmap(
            f"{spec.label}: test accuracy over models x rungs",
            spec.models,
            columns,
            values,
            solved,
            groups,
            caption=(
                f"Mean test accuracy over seeds at each model's chosen learning rate; rungs ({knobs}) "
                "easiest first; bold: the rung is solved (the ladder's criterion, mean over seeds); "
                "grey dot: not run (the climb stopped at an earlier rung, or has not reached it yet)."
            ),
        )
        ran = [
            m
            for m in spec.models
            if any(by[(t, m)].lr_rows and any(by[(t, m)].lr_rows.values()) for t in spec.tasks)
        ]
        refused = [m for m in spec.models if m not in ran and all(by[(t, m)].error for t in spec.tasks)]
        missing = [m for m in spec.models if m not in ran and m not in refused]
        n_runs = len(run_ids(pairs))
        elapsed = wall_time(runs, pairs) / max(1, spec.jobs or 1)
        finished = sum(p.finished for p in pairs)
        text = (
            f"{spec.description} Models that ran: {', '.join(ran)}"
            + (f"; not run yet: {', '.join(missing)}" if missing else "")
            + (f"; cannot take any task at this budget (n/a): {', '.join(refused)}" if refused else "")
            + f". {n_runs} runs, {finished}/{len(pairs)} climbs finished, about {elapsed / 3600:.1f} h on "
            f"{spec.jobs or 1} workers (run wall time / workers). Every model sized to {_budget(spec)}; "
            f"learning rate chosen from {', '.join(f'{lr:g}' for lr in spec.lrs)} on the "
            f"validation set; {spec.seeds} seed{'s' if spec.seeds > 1 else ''} per rung."
        )
        text += _agreement_text(spec, pairs, runs)
        sections.append(Section(f"study {spec.label}: memory horizons", figures=[heat], text=text))
        cols, cells = horizon_table(spec, pairs)
        notes = (
            "Each cell: the hardest rung solved (the knob's value), with how many seeds solved it on their "
            "own; 0: not even the easiest rung (with its seeds); …: still climbing; n/a: the model cannot "
            "take the task. params and state: the model's size and the floats it carries per sequence, at the first "
            "task's easiest rung (an attention model's state grows with the sequence; at equal state its width "
            "shrinks on longer rungs)."
        ) + (" " + CAPPED_NOTE if any(p.capped for p in pairs) else "")
        lr_figs = []
        for task in spec.tasks:
            fig = Figure(
                f"{task}: validation accuracy against learning rate (easiest rung, seed 0)",
                "learning rate",
                "validation accuracy",
                xlog=True,
                caption="The rate with the best validation accuracy is the one the climb uses (the "
                "sensitivity is part of the result: recurrent models often learn in a narrow window).",
            )
            for i, model in enumerate(spec.models):
                rows = by[(task, model)].lr_rows
                xs = [lr for lr, r in rows.items() if r is not None]
                if not xs:
                    continue
                ys = [float(rows[lr].get("val_accuracy") or 0.0) for lr in xs]
                fig.lines.append(Line(model, xs, ys, group=i))
            if fig.lines:
                lr_figs.append(fig)
        table = Table(f"study {spec.label}: horizon per model and task", cols, cells, notes)
        sections.append(
            Section(
                f"study {spec.label}: horizons and learning rates",
                tables=[table, rung_table(spec, pairs)],
                figures=lr_figs,
            )
        )
    return sections, used


def rung_table(spec: Any, pairs: list[Any]) -> Table:
    """Every rung run: its seeds' mean test accuracy ± the 95% CI half-width, the ladder's criterion and
    how many seeds met it on their own."""
    from seqbench.tables import fmt

    cells = []
    for p in pairs:
        for rung in p.rungs:
            if not rung.rows:
                continue
            ladder = spec.tasks[p.task]
            acc = fmt(rung.accuracy, ".3f")
            if len(rung.rows) > 1:
                acc += f" ± {fmt(rung.accuracy_ci95, '.3f')}"
            crit = "" if ladder.metric == "accuracy" else f"{ladder.metric} {fmt(rung.score, '.4f')}"
            cells.append(
                [
                    p.task,
                    p.model,
                    f"{p.lr:g}",
                    f"{ladder.knob}={rung.value}",
                    f"{len(rung.rows)}/{rung.seeds}",
                    acc,
                    crit,
                    f"{rung.seeds_solved}/{len(rung.rows)}",
                    "solved" if rung.solved else ("not solved" if rung.complete else "running"),
                ]
            )
    columns = ["task", "model", "lr", "rung", "seeds", "accuracy", "criterion", "seeds solved", "rung"]
    notes = (
        "accuracy: mean test accuracy over seeds ± the 95% confidence half-width (Student t); criterion: the "
        "ladder's own metric where it is not accuracy (adding: test MSE, solved below 0.01)."
    )
    return Table(f"study {spec.label}: every rung run", columns, cells, notes)


def _agreement_text(spec: Any, pairs: list[Any], runs: pd.DataFrame) -> str:
    """How far the study's quick variant, where stored, agrees with it."""
    from seqbench.study import Study, agreement, stored_studies

    quick = next((s for s in stored_studies(spec.results) if s.name == f"{spec.name}-quick"), None)
    if quick is None:
        return ""
    rows = [r for r in agreement(pairs, Study(quick).pairs(runs)) if r["models"] > 1]
    if not rows:
        return ""
    parts = [
        f"{r['task']}: {r['pairs_alike']}/{r['pairs']} model pairs ordered alike, "
        f"{r['horizons_equal']}/{r['models']} horizons equal"
        for r in rows
    ]
    return f" Its quick variant ({quick.name}, {quick.seeds} seed) against it: " + "; ".join(parts) + "."


def json_key(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def _budget(spec: Any) -> str:
    """What a study sized every model to: its parameter budget, or its state budget (the equal-state view)."""
    if spec.state is not None:
        return (
            f"{spec.state:,} floats of state per sequence (state_size at each rung's training length; an "
            "attention model's cache counted at that length)"
        )
    return f"{spec.params:,} parameters"
