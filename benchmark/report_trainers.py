"""The report's trainer section: memory horizon against truncation, drawn from the stored runs.

Truncated BPTT (Williams & Peng 1990) credits nothing further back than its truncation k2, so a model trained
with it should remember about as far as k2 and no further, while full BPTT is bounded only by what it can
learn. The figure sets the two side by side from the rows alone:

- A *study* is a set of runs that differ only in the trainer (bptt, or tbptt with its k1, k2), the task's
  length knob (the task option whose value is the run's training length, e.g. copy_memory's T) and the
  seed: same task, model, model options, width, training budget and other task options. A study is drawn
  only when it holds at least one tbptt run, and a section appears only when some study exists.
- The horizon of one seed under one trainer: the longest training length T up to which every run (each
  trained at its own T) reaches `threshold` accuracy at its training length, lengths taken in order, the
  first miss ending it (`leaderboard.memory_horizon`, the leaderboard's own definition); 0 when even the
  shortest misses. A length a seed has no run at also ends it.
- The figure: the mean over seeds against k2 with its 95% Student-t confidence band, full BPTT as a flat
  line, and horizon = k2 as the reference bound.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from typing import Any

import pandas as pd

from seqbench.leaderboard import memory_horizon, t95
from seqbench.report import Figure, Line, Section
from seqbench.tables import Table, fmt

#: Training settings that do not change what is learned, left out when runs are grouped into studies.
_NOT_THE_BUDGET = ("trainer", "trainer_options", "threads", "compile")


def _options(text: Any) -> dict[str, Any]:
    if isinstance(text, dict):
        return text
    if text is None or (isinstance(text, float) and math.isnan(text)) or text == "":
        return {}
    return json.loads(text)


def _trainer(row: pd.Series) -> tuple[str, int | None]:
    """('bptt', None) or ('tbptt k1=…, k2=…', k2). Rows stored before trainers existed are BPTT."""
    name = row.get("trainer")
    if not isinstance(name, str) or not name:
        name = "bptt"
    if name != "tbptt":
        return name, None
    opts = _options(row.get("trainer_options"))
    k2 = int(opts["k2"])
    return f"tbptt k1={int(opts.get('k1', k2))} k2={k2}", k2


def _budget(row: pd.Series) -> str:
    cfg = _options(row.get("train_config"))
    return json.dumps({k: v for k, v in cfg.items() if k not in _NOT_THE_BUDGET}, sort_keys=True)


def _canonical(kind: str, name: str, options: dict[str, Any]) -> str:
    """The options that differ from the class's defaults, as JSON: rows stored before options were
    resolved (`{}`) or before an option existed (it is absent) group with those that spell every default
    out, as their config_hash does. A name the registry cannot load keeps its options as stored."""
    from seqbench.options import non_default
    from seqbench.registry import MODELS, TASKS

    with contextlib.suppress(Exception):  # a plugin not installed here: its rows group as stored
        options = non_default((MODELS if kind == "model" else TASKS).get(name), options)
    return json.dumps(options, sort_keys=True)


def studies(runs: pd.DataFrame) -> Iterator[tuple[dict[str, Any], pd.DataFrame]]:
    """(what the study holds fixed, its runs with columns `label`, `k2` and `T`) for every study that has
    a tbptt run. Only BPTT and TBPTT runs on episodes (no stream) with status ok count."""
    if runs.empty or "trainer" not in runs:
        return
    r = runs[(runs["status"] == "ok") & runs["train_length"].notna()]
    if "stream_episodes" in r:
        r = r[r["stream_episodes"].fillna(0) == 0]
    r = r[r["trainer"].fillna("bptt").isin(["bptt", "tbptt"])]
    if not (r["trainer"] == "tbptt").any():
        return
    r = r.assign(
        _budget=r.apply(_budget, axis=1),
        _model_options=[
            _canonical("model", m, _options(o)) for m, o in zip(r["model"], r["model_options"], strict=True)
        ],
    )
    coarse = ["task", "model", "_model_options", "hidden_size", "_budget"]
    for key, g in r.groupby(coarse, sort=True, dropna=False):
        if not (g["trainer"] == "tbptt").any():
            continue
        opts = [_options(s) for s in g["task_options"]]
        # The length knob: the options equal to the training length in every run of the group.
        knob = set.intersection(
            *({k for k, v in o.items() if v == t} for o, t in zip(opts, g["train_length"], strict=True))
        )
        if not knob:
            continue
        rest = [_canonical("task", key[0], {k: v for k, v in o.items() if k not in knob}) for o in opts]
        g = g.assign(_rest=rest)
        for rest_key, s in g.groupby("_rest", sort=True):
            if not (s["trainer"] == "tbptt").any() or s["train_length"].nunique() < 2:
                continue
            labels = s.apply(_trainer, axis=1)
            s = s.assign(
                label=[lab for lab, _ in labels],
                k2=[k for _, k in labels],
                T=s["train_length"].astype(int),
            )
            fixed = dict(zip(coarse, key, strict=True))
            yield (
                {
                    "task": fixed["task"],
                    "model": fixed["model"],
                    "hidden_size": int(fixed["hidden_size"]),
                    "knob": ", ".join(sorted(knob)),
                    "task_options": rest_key,
                    "budget": _options(fixed["_budget"]),
                },
                s,
            )


def horizons(study: pd.DataFrame, threshold: float) -> dict[str, list[int]]:
    """Per trainer label, the horizon of each seed (seeds in order)."""
    lengths = sorted(study["T"].unique())
    out: dict[str, list[int]] = {}
    for label, g in study.groupby("label", sort=True):
        per_seed = []
        for _seed, s in g.groupby("seed", sort=True):
            acc = s.groupby("T")["accuracy"].mean()
            per_seed.append(
                memory_horizon({int(t): float(acc.get(t, float("nan"))) for t in lengths}, threshold)
            )
        out[str(label)] = per_seed
    return out


def _mean_ci(values: list[int]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t95(n - 1) * sd / math.sqrt(n)


def _k1_is_k2(label: str) -> bool:
    k1, k2 = (part.split("=")[1] for part in label.split()[1:3])
    return k1 == k2


def _order(labels: list[str], k2_of: dict[str, int | None]) -> list[str]:
    return sorted(labels, key=lambda lab: (k2_of[lab] is None, k2_of[lab] or 0, lab))


def horizon_figure(fixed: dict[str, Any], study: pd.DataFrame, threshold: float) -> tuple[Figure, Table]:
    h = horizons(study, threshold)
    k2_of = dict(zip(study["label"], study["k2"], strict=True))
    k2_of = {lab: (None if k is None or k != k else int(k)) for lab, k in k2_of.items()}
    labels = _order(list(h), k2_of)
    tb = [lab for lab in labels if k2_of[lab] is not None]
    budget = fixed["budget"]
    fig = Figure(
        f"{fixed['task']}/{fixed['model']} (H={fixed['hidden_size']}): memory horizon against truncation",
        "truncation k2 (steps)",
        f"horizon: longest {fixed['knob']} with accuracy >= {threshold}",
        xlog=True,
        caption=(
            f"Each point: the mean over seeds of the horizon (runs trained at each {fixed['knob']}, "
            f"{budget.get('steps', '?')} steps at most), with its 95% confidence band (Student t); "
            "truncated BPTT against k2, full BPTT as a flat line; dotted: horizon = k2."
        ),
    )
    xs = [float(k2_of[lab]) for lab in tb]
    stats = {lab: _mean_ci(h[lab]) for lab in labels}
    if tb:
        means = [stats[lab][0] for lab in tb]
        half = [0.0 if math.isnan(stats[lab][1]) else stats[lab][1] for lab in tb]
        fig.lines.append(
            Line(
                "tbptt (k1 = k2), mean over seeds"
                if all(_k1_is_k2(lab) for lab in tb)
                else "tbptt, mean over seeds",
                xs,
                means,
                lo=[max(0.0, m - c) for m, c in zip(means, half, strict=True)],
                hi=[m + c for m, c in zip(means, half, strict=True)],
                group=0,
            )
        )
        fig.lines.append(Line("horizon = k2", xs, xs, dashed=True, group=7))
    if "bptt" in stats and xs:
        m = stats["bptt"][0]
        fig.lines.append(Line("full bptt, mean over seeds", [min(xs), max(xs)], [m, m], dashed=True, group=1))
    lengths = sorted(study["T"].unique())
    acc = study.groupby(["label", "T"])["accuracy"].agg(["mean", "count"])
    cells = []
    for lab in labels:
        mean, ci = stats[lab]
        row = [lab, str(len(h[lab])), ", ".join(map(str, h[lab])), f"{mean:.1f} ± {fmt(ci, '.1f')}"]
        for t in lengths:
            row.append(f"{acc.loc[(lab, t), 'mean']:.2f}" if (lab, t) in acc.index else "-")
        cells.append(row)
    table = Table(
        f"{fixed['task']}/{fixed['model']} (H={fixed['hidden_size']}, {budget.get('steps', '?')} steps): "
        "horizon per trainer",
        ["trainer", "seeds", "horizon per seed", "horizon mean ± 95% CI", *(f"acc @{t}" for t in lengths)],
        cells,
        notes=(
            f"Task options held fixed: {fixed['task_options']}; training: {json.dumps(budget, sort_keys=True)}. "
            f"acc @{fixed['knob']}: mean accuracy over seeds of the runs trained at that {fixed['knob']}, "
            "at their training length."
        ),
        left=3,
    )
    return fig, table


def horizon_sections(runs: pd.DataFrame, threshold: float = 0.9) -> list[Section]:
    """One section per study with a truncated-BPTT run (none when the store has none)."""
    sections = []
    for fixed, study in studies(runs):
        fig, table = horizon_figure(fixed, study, threshold)
        sections.append(
            Section(
                f"trainers: {fixed['task']}/{fixed['model']} (H={fixed['hidden_size']}) horizon against "
                "truncation",
                tables=[table],
                figures=[fig],
                text=(
                    "Truncated BPTT credits nothing further back than k2 steps: the horizon it trains "
                    "should stay near k2, while full BPTT is bounded only by what the model learns in "
                    "the budget."
                ),
            )
        )
    return sections
