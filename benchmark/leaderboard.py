"""Leaderboards: queries over the stored rows, aggregated over seeds (never only the best seed)."""

from __future__ import annotations

import json
import math

import pandas as pd

from seqbench.tables import Table, fmt

#: Two-sided 95% Student-t quantiles (0.975) for 1..30 degrees of freedom.
_T95 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


def t95(dof: int) -> float:
    """The 0.975 quantile of Student's t; beyond 30 degrees of freedom 1.96 + 2.4/dof is within 0.002."""
    if dof < 1:
        return float("nan")
    return _T95[dof - 1] if dof <= 30 else 1.96 + 2.4 / dof


def _accuracy_by_length(column: pd.Series) -> dict[str, float]:
    """Mean over seeds of the accuracy at each evaluation length: {"accuracy_at_50": 0.97, ...}."""
    per_seed = pd.DataFrame([json.loads(v) for v in column.dropna()])
    if per_seed.empty:
        return {}
    means = per_seed.mean()
    return {f"accuracy_at_{k}": float(means[k]) for k in sorted(means.index, key=int)}


def memory_horizon(accuracy_by_length: dict[int, float], threshold: float = 0.9) -> int:
    """The longest evaluation length up to which accuracy stays at or above `threshold`: lengths are
    taken in order and the first one below the threshold ends the horizon. 0 when even the shortest
    length is below it. One number that says how far a model remembers."""
    horizon = 0
    for length in sorted(accuracy_by_length):
        value = accuracy_by_length[length]
        if value != value or value < threshold:  # NaN counts as not remembered
            break
        horizon = length
    return horizon


def _first(g: pd.DataFrame, column: str) -> int | None:
    """A per-configuration constant (the same for every seed), or None where not recorded."""
    if column not in g or not g[column].notna().any():
        return None
    return int(g[column].dropna().iloc[0])


def _settings(g: pd.DataFrame) -> dict[str, str]:
    """What one configuration was, flattened: training settings by name, options as task.KEY / model.KEY."""
    first = g.iloc[0]
    out: dict[str, str] = {}
    for column, prefix in (("train_config", ""), ("task_options", "task."), ("model_options", "model.")):
        raw = first.get(column)
        if isinstance(raw, str) and raw:
            for k, v in json.loads(raw).items():
                out[prefix + k] = json.dumps(v) if not isinstance(v, str) else v
    return out


def setting_labels(configs: list[tuple[str, str, dict[str, str]]]) -> list[str]:
    """For each (task, model, settings), the settings that tell it apart from the other configurations of
    the same task and model ("lr=0.003"): grid points stay distinguishable on the leaderboard. Empty where a
    task and model have one configuration."""
    by_pair: dict[tuple[str, str], list[dict[str, str]]] = {}
    for t, m, settings in configs:
        by_pair.setdefault((t, m), []).append(settings)
    labels = []
    for t, m, settings in configs:
        others = by_pair[(t, m)]
        keys = sorted({k for o in others for k in o if len({o.get(k) for o in others}) > 1})
        labels.append(" ".join(f"{k}={settings.get(k, '-')}" for k in keys))
    return labels


def aggregate(
    runs: pd.DataFrame,
    task: str | None = None,
    model: str | None = None,
    horizon_threshold: float = 0.9,
) -> pd.DataFrame:
    """One row per (task, model, config_hash): mean, std and 95% CI half-width of accuracy over seeds,
    with the costs beside it and the memory horizon of the mean accuracy per length. Only runs with status
    ok count; failed runs are counted separately."""
    df = runs[runs.get("kind", "run") == "run"] if "kind" in runs else runs
    if task:
        df = df[df["task"] == task]
    if model:
        df = df[df["model"] == model]
    if df.empty:
        return pd.DataFrame()
    keys = ["task", "model", "config_hash"]
    out = []
    settings = []
    for (t, m, h), g in df.groupby(keys, sort=False):
        settings.append((t, m, _settings(g)))
        ok = g[g["status"] == "ok"]
        acc = ok["accuracy"].astype(float)
        n = int(acc.count())
        std = float(acc.std(ddof=1)) if n > 1 else float("nan")
        by_length = _accuracy_by_length(ok["accuracy_by_length"])
        horizon = memory_horizon({int(k[12:]): v for k, v in by_length.items()}, horizon_threshold)
        out.append(
            {
                "task": t,
                "model": m,
                "config_hash": h,
                "preset": g["preset"].iloc[0],
                "seeds": n,
                "failed": int((g["status"] != "ok").sum()),
                "accuracy_mean": float(acc.mean()) if n else float("nan"),
                "accuracy_std": std,
                "accuracy_ci95": t95(n - 1) * std / math.sqrt(n) if n > 1 else float("nan"),
                # Only for setting a paper's table beside ours (NNCH reports the best of 10 seeds): never a
                # ranking figure.
                "accuracy_max_over_seeds": float(acc.max()) if n else float("nan"),
                "solved": int(ok["solved"].fillna(False).astype(bool).sum()),
                "steps_to_solve": float(ok["steps_to_solve"].astype(float).mean()),
                "time_to_solve_s": float(ok["time_to_solve_s"].astype(float).mean()),
                "train_tokens_per_s": float(ok["train_tokens_per_s"].astype(float).mean()),
                "peak_memory_bytes": float(ok["peak_memory_bytes"].astype(float).mean()),
                "params": _first(g, "params"),
                "state_size": _first(g, "state_size"),
                "target_params": _first(g, "target_params"),
                "target_state": _first(g, "target_state"),
                "train_time_s": float(ok["train_time_s"].astype(float).mean()),
                "horizon": horizon if by_length else None,
                **by_length,
            }
        )
    board = pd.DataFrame(out)
    board.insert(3, "setting", setting_labels(settings))
    return sort_board(board)


MAX_LENGTH_COLUMNS = 10
SIZE_COLUMNS = {"params": "params", "state_size": "state_size"}


def sort_board(board: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Per task (and size, with `by`), best accuracy first; ties broken by cost."""
    keys = ["task", *([SIZE_COLUMNS[by]] if by else []), "accuracy_mean", "time_to_solve_s", "params"]
    ascending = [True, *([True] if by else []), False, True, True]
    return board.sort_values(keys, ascending=ascending, na_position="last").reset_index(drop=True)


def board_table(
    board: pd.DataFrame, by: str | None = None, title: str = "seqbench leaderboard", terminal: bool = False
) -> Table:
    """The leaderboard as a table: accuracy as mean ± 95% CI half-width over seeds, then the mean
    accuracy at every evaluation length, the memory horizon and the costs. `terminal`: the standard
    deviation in a column of its own (droppable on a narrow terminal) instead of inside the accuracy cell."""
    by_length = sorted((c for c in board.columns if c.startswith("accuracy_at_")), key=lambda c: int(c[12:]))
    if len(by_length) > MAX_LENGTH_COLUMNS:  # the Chomsky suite evaluates 461 lengths: show a spread of them
        step = (len(by_length) - 1) / (MAX_LENGTH_COLUMNS - 1)
        by_length = [by_length[round(i * step)] for i in range(MAX_LENGTH_COLUMNS)]
    size = {"params": "params", "state_size": "state"}.get(by or "")
    has_setting = "setting" in board and board["setting"].astype(bool).any()
    columns = ["task", "model", *(["setting"] if has_setting else [])]
    columns += [*([size] if size else []), "seeds", "failed", "accuracy", *(["sd"] if terminal else [])]
    columns += ["max over seeds*"]
    columns += [f"@{c[12:]}" for c in by_length]
    columns += ["horizon", "solved", "steps to solve", "tokens/s", "peak MiB"]
    columns += [] if by == "params" else ["params"]
    cells = []
    for r in board.to_dict("records"):
        acc = fmt(r["accuracy_mean"], ".3f")
        if r["seeds"] > 1:
            acc += f" ± {fmt(r['accuracy_ci95'], '.3f')}"
            acc += "" if terminal else f" (sd {fmt(r['accuracy_std'], '.3f')})"
        row = [r["task"], r["model"], *([r["setting"]] if has_setting else [])]
        if size:
            row.append(fmt(r[SIZE_COLUMNS[by]], ","))
        row += [str(r["seeds"]), str(r["failed"]), acc]
        row += [fmt(r["accuracy_std"], ".3f")] if terminal else []
        row += [fmt(r.get("accuracy_max_over_seeds"), ".3f")]
        row += [fmt(r.get(c), ".2f" if terminal else ".3f") for c in by_length]
        # ".0f": the horizon column is float where some configuration has none (all its seeds failed)
        row += [
            fmt(r.get("horizon"), ".0f"),
            f"{r['solved']}/{r['seeds']}",
            fmt(r["steps_to_solve"], ".0f"),
            fmt(r["train_tokens_per_s"], ",.0f"),
            fmt(r["peak_memory_bytes"] / 2**20, ".1f"),
        ]
        if by != "params":
            row.append(fmt(r["params"], ","))
        cells.append(row)
    notes = (
        "accuracy: mean over seeds at the training length (for the Chomsky-hierarchy suite: of each run's "
        "mean over the evaluation lengths beyond training), ± the 95% confidence half-width (Student t) and "
        "the standard deviation; *max over seeds: the best seed, only to set beside papers that report it "
        "(NNCH), never a ranking; @L: mean accuracy at evaluation length L ('-' where a task does not "
        f"evaluate at L; at most {MAX_LENGTH_COLUMNS} lengths, evenly spread, are shown); horizon: the "
        "longest length up to which mean accuracy stays >= the threshold."
    )
    # On a narrow terminal these go first, in this order (to_rich says which it left out).
    optional = ["params", "peak MiB", "max over seeds*", "steps to solve", "tokens/s", "sd", "solved"]
    optional += [f"@{c[12:]}" for c in reversed(by_length)]
    return Table(title, columns, cells, notes, left=3 if has_setting else 2, optional=optional)
