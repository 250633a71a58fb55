"""Leaderboards: queries over the stored rows, aggregated over seeds (never only the best seed)."""

from __future__ import annotations

import json
import math

import pandas as pd

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


def aggregate(runs: pd.DataFrame, task: str | None = None, model: str | None = None) -> pd.DataFrame:
    """One row per (task, model, config_hash): mean, std and 95% CI half-width of accuracy over seeds,
    with the costs beside it. Only runs with status ok count; failed runs are counted separately."""
    df = runs[runs.get("kind", "run") == "run"] if "kind" in runs else runs
    if task:
        df = df[df["task"] == task]
    if model:
        df = df[df["model"] == model]
    if df.empty:
        return pd.DataFrame()
    keys = ["task", "model", "config_hash"]
    out = []
    for (t, m, h), g in df.groupby(keys, sort=False):
        ok = g[g["status"] == "ok"]
        acc = ok["accuracy"].astype(float)
        n = int(acc.count())
        std = float(acc.std(ddof=1)) if n > 1 else float("nan")
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
                "solved": int(ok["solved"].fillna(False).astype(bool).sum()),
                "steps_to_solve": float(ok["steps_to_solve"].astype(float).mean()),
                "time_to_solve_s": float(ok["time_to_solve_s"].astype(float).mean()),
                "train_tokens_per_s": float(ok["train_tokens_per_s"].astype(float).mean()),
                "peak_memory_bytes": float(ok["peak_memory_bytes"].astype(float).mean()),
                "params": int(g["params"].dropna().iloc[0]) if g["params"].notna().any() else None,
                "train_time_s": float(ok["train_time_s"].astype(float).mean()),
                **_accuracy_by_length(ok["accuracy_by_length"]),
            }
        )
    board = pd.DataFrame(out)
    # Best accuracy first; ties broken by cost (faster to solve, then fewer parameters).
    return board.sort_values(
        ["task", "accuracy_mean", "time_to_solve_s", "params"],
        ascending=[True, False, True, True],
        na_position="last",
    ).reset_index(drop=True)
