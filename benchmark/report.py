"""`seqbench report`: one self-contained HTML file (or Markdown) from the stored results.

Contents, per task: the leaderboard (mean ± 95% CI over seeds, memory horizon, costs); learning curves
(accuracy at the training length against samples seen, the mean over seeds with the band from the worst to
the best seed); accuracy against length with the training range shaded and the chance level drawn; speed
against accuracy. Then, where stored: memory and time against sequence length from `seqbench bench`, the
gradient-flow probe from `seqbench probe`, and the configurations every number came from.

Self-contained: figures are inline SVG drawn by matplotlib (text as paths, so no fonts are fetched), the
style sheet is inline, nothing is loaded from the network. `--interactive` draws the same figures with plotly
instead, its JavaScript bundle inlined in the file. Every name that comes from a plugin, an option or a
stored row is escaped. A short inline script records on <body> how many figures rendered and whether any
script failed (data-figures, data-figures-rendered, data-script-errors), so a browser test can check it.
"""

from __future__ import annotations

import html
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

import seqbench
from seqbench.leaderboard import aggregate, board_table
from seqbench.store import read_bench, read_curves, read_probes, read_runs, write_atomic
from seqbench.tables import Table, md_escape, to_markdown


@dataclass
class Line:
    label: str
    x: list[float]
    y: list[float]
    lo: list[float] | None = None  # band
    hi: list[float] | None = None
    dashed: bool = False
    group: int = 0  # lines of one group share a colour


@dataclass
class Figure:
    title: str
    xlabel: str
    ylabel: str
    lines: list[Line] = field(default_factory=list)
    points: list[tuple[str, float, float]] = field(default_factory=list)  # labelled scatter
    shade: tuple[float, float] | None = None  # x range (training lengths)
    shade_label: str = "training lengths"
    chance: Line | None = None
    xlog: bool = False
    ylog: bool = False
    caption: str = ""


# Data -> figures


def _label(row: dict[str, Any], several: bool) -> str:
    """A configuration's name in a legend: the model, and its size when a task has several per model."""
    return f"{row['model']} (H={row['hidden_size']}, {row['params']:,} params)" if several else row["model"]


def learning_curves(task: str, runs: pd.DataFrame, curves: pd.DataFrame) -> Figure | None:
    fig = Figure(
        f"{task}: learning curves",
        "sequences seen",
        "accuracy at the training length",
        caption="Mean over seeds; the band spans the worst to the best seed at each evaluation.",
    )
    ok = runs[(runs["task"] == task) & (runs["status"] == "ok")]
    several = ok.groupby("model")["config_hash"].nunique().max() > 1 if len(ok) else False
    for i, (_, group) in enumerate(ok.groupby("config_hash", sort=True)):
        first = group.iloc[0].to_dict()
        c = curves[
            curves["run_id"].isin(group["run_id"])
            & (curves["split"] == "eval")
            & (curves["metric"] == "accuracy")
            & (curves["length"] == first["train_length"])
        ]
        if c.empty:
            continue
        per_step = c.groupby("samples_seen")["value"]
        stats = pd.DataFrame({"mean": per_step.mean(), "lo": per_step.min(), "hi": per_step.max()})
        stats = stats.sort_index()
        fig.lines.append(
            Line(
                _label(first, several),
                [float(v) for v in stats.index],
                stats["mean"].tolist(),
                stats["lo"].tolist(),
                stats["hi"].tolist(),
                group=i,
            )
        )
    return fig if fig.lines else None


def _chance_by_length(task: str, task_options: dict[str, Any], lengths: list[int]) -> list[float] | None:
    try:
        t = seqbench.load_task(task, **task_options)
        return [float(t.chance(length).get("accuracy", float("nan"))) for length in lengths]
    except Exception:  # a plugin task that is not installed here: no chance line
        return None


def generalisation(task: str, runs: pd.DataFrame) -> Figure | None:
    ok = runs[(runs["task"] == task) & (runs["status"] == "ok") & runs["accuracy_by_length"].notna()]
    if ok.empty:
        return None
    fig = Figure(
        f"{task}: accuracy against length",
        "length",
        "accuracy",
        caption="Mean over seeds at the end of training; band: worst to best seed.",
    )
    several = ok.groupby("model")["config_hash"].nunique().max() > 1
    all_lengths: set[int] = set()
    for i, (_, group) in enumerate(ok.groupby("config_hash", sort=True)):
        per_seed = pd.DataFrame([json.loads(v) for v in group["accuracy_by_length"]])
        per_seed.columns = [int(c) for c in per_seed.columns]
        per_seed = per_seed[sorted(per_seed.columns)]
        all_lengths |= set(per_seed.columns)
        first = group.iloc[0].to_dict()
        fig.lines.append(
            Line(
                _label(first, several),
                [float(c) for c in per_seed.columns],
                per_seed.mean().tolist(),
                per_seed.min().tolist(),
                per_seed.max().tolist(),
                group=i,
            )
        )
    first = ok.iloc[0]
    options = json.loads(first["task_options"] or "{}")
    try:
        lo, hi = seqbench.load_task(task, **options).train_lengths
    except Exception:
        lo, hi = 0, int(first["train_length"])
    fig.shade = (float(lo), float(hi))
    lengths = sorted(all_lengths)
    chance = _chance_by_length(task, options, lengths)
    if chance is None:
        chance = [float(first["chance_accuracy"])] * len(lengths)
    fig.chance = Line("chance", [float(v) for v in lengths], chance, dashed=True)
    return fig


def speed_accuracy(task: str, board: pd.DataFrame) -> Figure | None:
    b = board[board["task"] == task].dropna(subset=["train_tokens_per_s", "accuracy_mean"])
    if b.empty:
        return None
    fig = Figure(
        f"{task}: speed against accuracy",
        "training tokens/s",
        "accuracy (mean over seeds)",
        xlog=True,
        caption="Up and to the right is better: accurate and fast.",
    )
    fig.points = [(r.model, float(r.train_tokens_per_s), float(r.accuracy_mean)) for r in b.itertuples()]
    return fig


def bench_figures(bench: pd.DataFrame) -> list[Figure]:
    """Memory and time against sequence length, from the latest bench."""
    ok = bench[bench["status"] == "ok"]
    if ok.empty:
        return []
    latest = ok[ok["bench_id"] == ok["bench_id"].max()]
    hidden = int(latest["hidden_size"].min())
    latest = latest[latest["hidden_size"] == hidden]
    memory = Figure(
        f"peak memory against sequence length (H={hidden})",
        "sequence length",
        "peak memory of a training step (MiB)",
        xlog=True,
        ylog=True,
        caption="From `seqbench bench`: forward + backward of one batch; a slope of 1 is linear in length.",
    )
    speed = Figure(
        f"time against sequence length (H={hidden})",
        "sequence length",
        "forward + backward (ms)",
        xlog=True,
        ylog=True,
        caption="From `seqbench bench`, median of interleaved rounds.",
    )
    for i, (model, g) in enumerate(latest.groupby("model", sort=True)):
        g = g.sort_values("length")
        xs = g["length"].astype(float).tolist()
        if g["peak_memory_bytes"].notna().all():
            memory.lines.append(Line(model, xs, (g["peak_memory_bytes"] / 2**20).tolist(), group=i))
        speed.lines.append(Line(model, xs, (g["train_step_s"] * 1e3).tolist(), group=i))
    return [f for f in (memory, speed) if f.lines]


def probe_figures(probes: pd.DataFrame) -> list[Figure]:
    if probes.empty:
        return []
    figs = []
    latest = probes.sort_values("created_at").groupby(["task", "model"])["probe_id"].last()
    for task in sorted(probes["task"].unique()):
        fig = Figure(
            f"{task}: gradient reaching back in time",
            "distance from the last answer (steps)",
            "||dL/dx_t|| relative to distance 0",
            ylog=True,
            caption="Dashed: at initialisation; solid: after training (`seqbench probe`).",
        )
        for i, ((t, model), probe_id) in enumerate(latest.items()):
            if t != task:
                continue
            p = probes[probes["probe_id"] == probe_id]
            for stage in ("init", "trained"):
                s = p[(p["stage"] == stage) & (p["relative"] > 0)].sort_values("distance")
                steps = int(s["steps_trained"].iloc[0]) if len(s) else 0
                label = f"{model} ({'init' if stage == 'init' else f'{steps} steps'})"
                xs = s["distance"].astype(float).tolist()
                fig.lines.append(Line(label, xs, s["relative"].tolist(), dashed=stage == "init", group=i))
        figs.append(fig)
    return figs


def configurations(runs: pd.DataFrame) -> Table:
    cells = []
    for h, g in runs.groupby("config_hash", sort=True):
        r = g.iloc[0]
        seeds = ", ".join(str(s) for s in sorted(g["seed"].unique()))
        devices = ", ".join(
            sorted({f"{d} ({n})" for d, n in zip(g["device"], g["device_name"], strict=True)})
        )
        cells.append(
            [
                str(h),
                str(r["task"]),
                str(r["model"]),
                str(r["task_options"]),
                str(r["model_options"]),
                str(r["train_config"]),
                str(r["preset"]),
                seeds,
                devices,
                f"seqbench {r['seqbench_version']} ({r['git_sha']}), torch {r['torch_version']}",
            ]
        )
    columns = ["config", "task", "model", "task options", "model options", "training", "preset", "seeds"]
    columns += ["device", "versions"]
    return Table("run configurations", columns, cells, left=len(columns))


# Rendering


def _colour(i: int) -> str:
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    palette += ["#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]
    return palette[i % len(palette)]


def render_svg(fig: Figure) -> str:
    """The figure as an inline <svg> element (matplotlib, text drawn as paths: no fonts to fetch)."""
    if hasattr(fig, "render_svg"):  # a figure that draws itself (report_study.Heatmap)
        return fig.render_svg()
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with plt.rc_context({"svg.fonttype": "path", "font.size": 9}):
        f, ax = plt.subplots(figsize=(7.2, 4.2))
        if fig.shade:
            ax.axvspan(*fig.shade, color="#999999", alpha=0.15, label=fig.shade_label)
        for line in fig.lines:
            colour = _colour(line.group)
            ax.plot(line.x, line.y, "--" if line.dashed else "-", marker=".", color=colour, label=line.label)
            if line.lo is not None and line.hi is not None:
                ax.fill_between(line.x, line.lo, line.hi, color=colour, alpha=0.15, linewidth=0)
        if fig.chance:
            ax.plot(fig.chance.x, fig.chance.y, ":", color="black", label="chance")
        for i, (label, x, y) in enumerate(fig.points):
            ax.scatter([x], [y], color=_colour(i), s=30)
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set(title=fig.title, xlabel=fig.xlabel, ylabel=fig.ylabel)
        if fig.xlog:
            ax.set_xscale("log")
        if fig.ylog:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if fig.lines or fig.shade:
            ax.legend(fontsize=7, loc="best")
        f.tight_layout()
        buf = io.StringIO()
        f.savefig(buf, format="svg")
        plt.close(f)
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML declaration and doctype: inline SVG needs neither


def render_plotly(fig: Figure, div_id: str) -> str:
    """The figure as a plotly <div> and the script that draws it (the bundle is inlined once per file)."""
    if hasattr(fig, "render_svg"):  # a heatmap stays SVG in the interactive report too
        return fig.render_svg()
    traces: list[dict[str, Any]] = []
    for line in fig.lines:
        colour = _colour(line.group)
        if line.lo is not None and line.hi is not None:
            traces.append(
                {
                    "x": line.x + line.x[::-1],
                    "y": line.hi + line.lo[::-1],
                    "fill": "toself",
                    "fillcolor": colour,
                    "opacity": 0.15,
                    "line": {"width": 0},
                    "hoverinfo": "skip",
                    "showlegend": False,
                }
            )
        dash = "dash" if line.dashed else "solid"
        trace = {"x": line.x, "y": line.y, "name": line.label, "line": {"color": colour, "dash": dash}}
        traces.append(trace)
    if fig.chance:
        traces.append(
            {
                "x": fig.chance.x,
                "y": fig.chance.y,
                "name": "chance",
                "line": {"color": "black", "dash": "dot"},
            }
        )
    for i, (label, x, y) in enumerate(fig.points):
        traces.append(
            {
                "x": [x],
                "y": [y],
                "name": label,
                "text": [label],
                "mode": "markers+text",
                "textposition": "top right",
                "marker": {"color": _colour(i)},
            }
        )
    layout: dict[str, Any] = {
        "title": {"text": fig.title},
        "xaxis": {"title": {"text": fig.xlabel}, "type": "log" if fig.xlog else "linear"},
        "yaxis": {"title": {"text": fig.ylabel}, "type": "log" if fig.ylog else "linear"},
        "height": 420,
    }
    if fig.shade:
        layout["shapes"] = [
            {
                "type": "rect",
                "xref": "x",
                "yref": "paper",
                "x0": fig.shade[0],
                "x1": fig.shade[1],
                "y0": 0,
                "y1": 1,
                "fillcolor": "#999999",
                "opacity": 0.15,
                "line": {"width": 0},
            }
        ]
    data = json.dumps(traces).replace("</", "<\\/")  # names cannot close the script element
    spec = json.dumps(layout).replace("</", "<\\/")
    return (
        f'<div id="{div_id}" class="plotly-figure"></div>'
        f"<script>Plotly.newPlot({json.dumps(div_id)}, {data}, {spec}, {{displaylogo: false}});</script>"
    )


def _html_table(table: Table) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>" for row in table.cells)
    notes = f'<p class="notes">{esc(table.notes)}</p>' if table.notes else ""
    return f"<h3>{esc(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: right; }
th { background: #f4f4f4; } td:first-child, td:nth-child(2) { text-align: left; }
.notes, figcaption { color: #555; font-size: .85em; }
figure { margin: 1em 0; } figure svg { max-width: 100%; height: auto; }
.wide { overflow-x: auto; }
"""

_SELF_CHECK = """
(function () {
  var body = document.body, errors = 0;
  window.addEventListener("error", function () { errors += 1; body.dataset.scriptErrors = String(errors); });
  body.dataset.scriptErrors = "0";
  window.addEventListener("load", function () {
    var figures = document.querySelectorAll("figure"), rendered = 0;
    figures.forEach(function (f) {
      var svg = f.querySelector("svg");
      if (!svg) return;
      var box = svg.getBBox ? svg.getBBox() : null;
      if (box && box.width > 0 && box.height > 0) rendered += 1;
    });
    body.dataset.figures = String(figures.length);
    body.dataset.figuresRendered = String(rendered);
  });
})();
"""


@dataclass
class Section:
    title: str
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    text: str = ""


def collect(results_dir: str | Path, tasks: list[str] | None = None) -> list[Section]:
    runs = read_runs(results_dir)
    if tasks:
        runs = runs[runs["task"].isin(tasks)]
    if runs.empty:
        raise FileNotFoundError(f"No runs stored under {results_dir}/" + (f" for {tasks}" if tasks else ""))
    from seqbench.report_study import study_sections

    # A study's heatmap comes first; its runs are its own sections' (the per-task leaderboards below hold the
    # other runs: a study's dozens of configurations per task would drown them).
    sections, study_runs = ([], set()) if tasks else study_sections(str(results_dir), runs)
    runs = runs[~runs["run_id"].isin(study_runs)]
    curves = read_curves(results_dir)
    board = aggregate(runs) if len(runs) else pd.DataFrame(columns=["task"])
    for task in sorted(runs["task"].unique()):
        sec = Section(task)
        rows = board[board["task"] == task]
        other_lengths = [c for c in rows if c.startswith("accuracy_at_") and rows[c].isna().all()]
        sec.tables.append(board_table(rows.drop(columns=other_lengths), title=f"{task}: leaderboard"))
        for fig in (
            learning_curves(task, runs, curves),
            generalisation(task, runs),
            speed_accuracy(task, board),
        ):
            if fig is not None:
                sec.figures.append(fig)
        sections.append(sec)
    from seqbench.report_trainers import horizon_sections  # it builds on this module's Figure and Section

    sections += horizon_sections(runs)
    bench = read_bench(results_dir)
    if not bench.empty:
        sections.append(
            Section(
                "speed and memory against length",
                figures=bench_figures(bench),
                text="From the latest `seqbench bench` stored beside these runs.",
            )
        )
    probes = read_probes(results_dir)
    if tasks and not probes.empty:
        probes = probes[probes["task"].isin(tasks)]
    if not probes.empty:
        sections.append(
            Section(
                "gradient flow",
                figures=probe_figures(probes),
                text=(
                    "How strongly the loss at the last answer reaches the input at each earlier step: the "
                    "vanishing-gradient picture behind the memory horizons above."
                ),
            )
        )
    sections.append(Section("configurations", tables=[configurations(runs)]))
    return sections


def write_html(sections: list[Section], out: Path, results_dir: str, interactive: bool = False) -> Path:
    esc = html.escape
    parts = []
    n = 0
    for sec in sections:
        parts.append(f"<h2>{esc(sec.title)}</h2>")
        if sec.text:
            parts.append(f"<p>{esc(sec.text)}</p>")
        for table in sec.tables:
            parts.append(f'<div class="wide">{_html_table(table)}</div>')
        for fig in sec.figures:
            n += 1
            drawn = render_plotly(fig, f"figure-{n}") if interactive else render_svg(fig)
            caption = f"<figcaption>{esc(fig.caption)}</figcaption>" if fig.caption else ""
            parts.append(f"<figure>{drawn}{caption}</figure>")
    head_script = ""
    if interactive:
        from plotly.offline import get_plotlyjs

        head_script = f"<script>{get_plotlyjs()}</script>"
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    doc = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>seqbench report</title><style>{_STYLE}</style>{head_script}</head><body>"
        f"<script>{_SELF_CHECK}</script>"
        f"<h1>seqbench report</h1><p>Generated {esc(generated)} by seqbench {esc(seqbench.__version__)} from "
        f"<code>{esc(str(results_dir))}</code>.</p>" + "".join(parts) + "</body></html>\n"
    )
    _write_text(out, doc)
    return out


def write_markdown(sections: list[Section], out: Path, results_dir: str) -> Path:
    """Markdown with the figures as SVG files in `<out stem>_files/` beside it."""
    fig_dir = out.parent / f"{out.stem}_files"
    lines = [f"# seqbench report\n\nFrom {md_escape(results_dir)}, seqbench {seqbench.__version__}.\n"]
    n = 0
    for sec in sections:
        lines.append(f"## {md_escape(sec.title)}\n")
        if sec.text:
            lines.append(md_escape(sec.text) + "\n")
        for table in sec.tables:
            lines.append(to_markdown(table))
        for fig in sec.figures:
            n += 1
            name = f"figure-{n}.svg"
            _write_text(fig_dir / name, render_svg(fig))
            lines.append(f"![{md_escape(fig.title)}]({fig_dir.name}/{name})\n")
            if fig.caption:
                lines.append(f"*{md_escape(fig.caption)}*\n")
    _write_text(out, "\n".join(lines))
    return out


def _write_text(path: Path, text: str) -> None:
    """Atomic, like every other file seqbench writes: a reader never sees half a report."""
    write_atomic(path, lambda fh: fh.write(text.encode("utf-8")))


def build_report(
    results_dir: str | Path = "results",
    out: str | Path | None = None,
    tasks: list[str] | None = None,
    fmt: str = "html",
    interactive: bool = False,
) -> Path:
    sections = collect(results_dir, tasks)
    out = Path(out or ("report.md" if fmt == "markdown" else "report.html"))
    if fmt == "markdown":
        return write_markdown(sections, out, str(results_dir))
    return write_html(sections, out, str(results_dir), interactive)
