from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from seqbench.leaderboard import aggregate, t95


def rows(model, accs, status=None, config_hash="h1"):
    status = status or ["ok"] * len(accs)
    return [
        {
            "kind": "run",
            "task": "copy",
            "model": model,
            "config_hash": config_hash,
            "preset": "quick",
            "seed": i,
            "status": s,
            "accuracy": a,
            "solved": a >= 0.99,
            "steps_to_solve": 100.0 if a >= 0.99 else None,
            "time_to_solve_s": 10.0 if a >= 0.99 else None,
            "train_tokens_per_s": 1000.0,
            "peak_memory_bytes": 2**20,
            "params": 50,
            "train_time_s": 5.0,
            "accuracy_by_length": json.dumps({"20": a, "50": a / 2}),
        }
        for i, (a, s) in enumerate(zip(accs, status, strict=True))
    ]


def test_mean_std_and_confidence_interval_by_hand():
    board = aggregate(pd.DataFrame(rows("lstm", [0.5, 0.7, 0.9])))
    r = board.iloc[0]
    assert r["seeds"] == 3 and r["accuracy_mean"] == pytest.approx(0.7)
    assert r["accuracy_std"] == pytest.approx(0.2)
    assert r["accuracy_ci95"] == pytest.approx(4.303 * 0.2 / math.sqrt(3))
    assert r["accuracy_at_50"] == pytest.approx(0.35)


def test_failed_runs_are_counted_not_averaged():
    board = aggregate(pd.DataFrame(rows("gru", [0.2, float("nan")], status=["ok", "diverged"])))
    r = board.iloc[0]
    assert r["seeds"] == 1 and r["failed"] == 1 and r["accuracy_mean"] == pytest.approx(0.2)


def test_sorted_by_accuracy_then_cost():
    df = pd.DataFrame(rows("slow", [1.0, 1.0]) + rows("weak", [0.3, 0.4], config_hash="h2"))
    fast = rows("fast", [1.0, 1.0], config_hash="h3")
    for r in fast:
        r["time_to_solve_s"] = 1.0
    board = aggregate(pd.concat([df, pd.DataFrame(fast)]))
    assert list(board["model"]) == ["fast", "slow", "weak"]


def test_t_quantiles():
    assert t95(1) == 12.706 and t95(30) == 2.042
    assert t95(60) == pytest.approx(2.000, abs=0.002) and t95(120) == pytest.approx(1.980, abs=0.002)
