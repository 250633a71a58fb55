from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from seqbench.leaderboard import aggregate, board_table, memory_horizon, sort_board, t95


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
    assert r["accuracy_max_over_seeds"] == pytest.approx(0.9)  # a comparison column only, never the ranking


def test_max_over_seeds_is_a_labelled_column_and_long_length_lists_are_thinned():
    from seqbench.leaderboard import MAX_LENGTH_COLUMNS, board_table

    many = rows("lstm", [0.5, 0.7])
    for r in many:
        r["accuracy_by_length"] = json.dumps({str(n): r["accuracy"] for n in range(40, 501)})
    table = board_table(aggregate(pd.DataFrame(many)))
    assert "max over seeds*" in table.columns and "max over seeds" in table.notes
    assert sum(c.startswith("@") for c in table.columns) == MAX_LENGTH_COLUMNS
    assert "@40" in table.columns and "@500" in table.columns


def test_failed_runs_are_counted_not_averaged():
    board = aggregate(pd.DataFrame(rows("gru", [0.2, float("nan")], status=["ok", "diverged"])))
    r = board.iloc[0]
    assert r["seeds"] == 1 and r["failed"] == 1 and r["accuracy_mean"] == pytest.approx(0.2)


def test_a_configuration_whose_seeds_all_failed_still_renders():
    """Its horizon is missing, which makes the column float: the table must still format it (it did not)."""
    failed = rows("irnn", [float("nan")] * 2, status=["diverged"] * 2, config_hash="h2")
    for r in failed:
        r["accuracy_by_length"] = None
    table = board_table(aggregate(pd.DataFrame(rows("lstm", [1.0, 1.0]) + failed)))
    col = table.columns.index("horizon")
    assert sorted(row[col] for row in table.cells) == ["-", "20"]


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


@pytest.mark.parametrize(
    "by_length,threshold,expected",
    [
        (
            {10: 1.0, 20: 0.95, 50: 0.5, 120: 0.95},
            0.9,
            20,
        ),  # the first failure ends it, later lengths ignored
        ({10: 1.0, 20: 1.0}, 0.9, 20),
        ({10: 0.89, 20: 1.0}, 0.9, 0),
        ({10: 0.9}, 0.9, 10),  # "at or above"
        ({50: 0.6, 10: 0.8, 20: 0.7}, 0.65, 20),  # lengths in order, whatever the dict's order
    ],
)
def test_memory_horizon(by_length, threshold, expected):
    assert memory_horizon(by_length, threshold) == expected


def test_horizon_uses_the_mean_over_seeds():
    """Seeds' accuracies at 50 are 0.95 and 0.8: their mean 0.875 is below 0.9, so the horizon is 20
    although one seed alone would reach 50."""
    df = pd.DataFrame(rows("lstm", [1.0, 1.0]))
    df["accuracy_by_length"] = [json.dumps({"20": 1.0, "50": 0.95}), json.dumps({"20": 1.0, "50": 0.8})]
    assert aggregate(df).iloc[0]["horizon"] == 20
    assert aggregate(df, horizon_threshold=0.85).iloc[0]["horizon"] == 50


def test_by_params_groups_equal_sizes(tmp_path):
    small = rows("a", [0.9, 0.9], config_hash="s1") + rows("b", [0.5, 0.5], config_hash="s2")
    big = rows("a", [1.0, 1.0], config_hash="b1") + rows("b", [0.95, 0.95], config_hash="b2")
    for r in big:
        r["params"] = 500
    board = sort_board(aggregate(pd.DataFrame(small + big)), by="params")
    assert list(zip(board["params"], board["model"], strict=True)) == [
        (50, "a"),
        (50, "b"),
        (500, "a"),
        (500, "b"),
    ]
    table = board_table(board, by="params")
    assert table.columns[2] == "params" and [c[2] for c in table.cells] == ["50", "50", "500", "500"]


def test_leaderboard_formats_and_parquet_export(tmp_path):
    from click.testing import CliRunner

    from seqbench.cli import main
    from seqbench.store import RUN_SCHEMA, write_run

    for i, r in enumerate(rows("lstm", [0.5, 0.7, 0.9])):
        full = dict.fromkeys(RUN_SCHEMA.names) | r | {"run_id": f"r{i}"}
        write_run(tmp_path, full)
    cli = CliRunner()
    base = ["leaderboard", "--results", str(tmp_path)]
    md = cli.invoke(main, [*base, "--format", "markdown"])
    assert md.exit_code == 0 and "| copy | lstm | 3 | 0 | 0.700 ± 0.497 (sd 0.200) |" in md.output
    js = cli.invoke(main, [*base, "--format", "json"])
    assert json.loads(js.output)[0]["accuracy_mean"] == pytest.approx(0.7)
    csv = cli.invoke(main, [*base, "--format", "csv", "--out", str(tmp_path / "board.parquet")])
    assert csv.output.splitlines()[0].startswith("task,model,config_hash")
    exported = pd.read_parquet(tmp_path / "board.parquet")
    assert exported.iloc[0]["seeds"] == 3 and exported.iloc[0]["accuracy_ci95"] == pytest.approx(
        0.4968, abs=1e-3
    )
