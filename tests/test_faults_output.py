"""Issue 20, rows 4 and 9-12, 14: what the reading commands do with bad files, odd names, narrow terminals,
typos and bad flags."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner
from rich.console import Console

from seqbench.cli import main
from seqbench.leaderboard import aggregate, board_table
from seqbench.registry import MODELS
from seqbench.store import RUN_SCHEMA, StoreWarning, read_runs, write_run
from seqbench.tables import to_rich
from tests.fakes import BROKEN_IMPORT, FakeEntryPoint

EVIL = "<script>alert(1)</script>"


def store(root, model="lstm", seeds=2, lr=1e-3, task="copy", lengths=(10, 20, 30, 50, 120)):
    for seed in range(seeds):
        row = dict.fromkeys(RUN_SCHEMA.names) | {
            "run_id": f"{abs(hash(model))}-{lr}-{seed}" if "/" in model else f"{model}-{lr}-{seed}",
            "kind": "run",
            "task": task,
            "model": model,
            "config_hash": f"{model}-{lr}",
            "preset": "quick",
            "seed": seed,
            "status": "ok",
            "accuracy": 0.5 + seed / 10,
            "solved": False,
            "train_tokens_per_s": 12345.0,
            "peak_memory_bytes": 200 * 2**20,
            "params": 123456,
            "train_time_s": 5.0,
            "train_config": json.dumps({"lr": lr, "steps": 2000}),
            "task_options": "{}",
            "model_options": "{}",
            "accuracy_by_length": json.dumps({str(n): 0.9 - n / 200 for n in lengths}),
        }
        write_run(root, row)


@pytest.fixture
def cli():
    return CliRunner()


# -- row 4: bad files in the store are skipped with a warning; --out into the store is refused ----------


@pytest.mark.parametrize("bad", [b"garbage, not parquet", b"", b"PAR1\x00\x00truncated"])
def test_a_bad_file_is_skipped_with_a_warning_naming_it(tmp_path, cli, bad):
    store(tmp_path)
    (tmp_path / "runs" / "broken.parquet").write_bytes(bad)
    with pytest.warns(StoreWarning, match=r"skipped .*broken\.parquet"):
        assert len(read_runs(tmp_path)) == 2
    for args in (["leaderboard"], ["report", "--out", str(tmp_path / "r.html")]):
        res = cli.invoke(main, [*args, "--results", str(tmp_path)])
        assert res.exit_code == 0 and res.exception is None, res.output
        assert "lstm" in res.output or "Report written" in res.output


def test_a_sweep_reads_past_a_bad_file(tmp_path, cli):
    store(tmp_path)
    (tmp_path / "runs" / "broken.parquet").write_bytes(b"garbage")
    args = [
        "sweep",
        "--task",
        "copy",
        "--model",
        "rnn",
        "--preset",
        "smoke",
        "--steps",
        "2",
        "--same-process",
    ]
    res = cli.invoke(main, [*args, "--results", str(tmp_path)])
    assert res.exit_code == 0 and res.exception is None, res.output
    assert "1 ok, 0 failed" in res.output


def test_a_foreign_parquet_is_skipped_and_out_into_the_store_is_refused(tmp_path, cli):
    store(tmp_path)
    res = cli.invoke(
        main, ["leaderboard", "--results", str(tmp_path), "--out", str(tmp_path / "runs" / "b.parquet")]
    )
    assert res.exit_code == 2 and "inside the store" in res.output
    assert not (tmp_path / "runs" / "b.parquet").exists()
    ok = cli.invoke(main, ["leaderboard", "--results", str(tmp_path), "--out", str(tmp_path / "b.parquet")])
    assert ok.exit_code == 0, ok.output
    (tmp_path / "runs" / "board.parquet").write_bytes((tmp_path / "b.parquet").read_bytes())  # by hand
    with pytest.warns(StoreWarning, match=r"board\.parquet: not a seqbench runs file"):
        runs = read_runs(tmp_path)
    assert sorted(runs["run_id"]) == ["lstm-0.001-0", "lstm-0.001-1"]


def test_a_newer_seqbench_file_is_read_without_its_new_columns_and_never_compacted(tmp_path):
    """A row from a newer seqbench (every column of ours, and one more) is read, not skipped: a study
    running under an older version must not take a newer worker's rows for missing runs. A compaction
    leaves that file alone: merging it under our schema would drop the newer column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from seqbench.compact import compact

    store(tmp_path)
    newer = tmp_path / "runs" / "newer.parquet"
    table = pq.read_table(tmp_path / "runs" / "lstm-0.001-0.parquet")
    table = table.set_column(0, "run_id", pa.array(["from-the-future"]))
    table = table.append_column("added_in_a_later_version", pa.array([1.5]))
    pq.write_table(table, newer)
    with pytest.warns(StoreWarning, match=r"1 file\(s\) .* newer seqbench: read without .*added_in_a_later"):
        runs = read_runs(tmp_path)
    assert sorted(runs["run_id"]) == ["from-the-future", "lstm-0.001-0", "lstm-0.001-1"]
    assert "added_in_a_later_version" not in runs.columns
    with pytest.warns(StoreWarning, match="not merged"):
        compact(tmp_path)
    assert newer.exists() and "added_in_a_later_version" in pq.read_schema(newer).names
    # A file that lacks our columns and has others is still foreign, however like ours it looks.
    pq.write_table(table.drop_columns(["task"]), tmp_path / "runs" / "foreign.parquet")
    with pytest.warns(StoreWarning, match=r"foreign\.parquet: not a seqbench runs file \(unknown column"):
        assert "from-the-future" in set(read_runs(tmp_path)["run_id"])


# -- row 9: a name that holds HTML is escaped in every output format -------------------------------------


def test_a_model_name_with_html_is_escaped_in_markdown_and_on_the_terminal(tmp_path, cli):
    store(tmp_path, model=EVIL)
    md = cli.invoke(main, ["leaderboard", "--results", str(tmp_path), "--format", "markdown"])
    assert (
        md.exit_code == 0 and EVIL not in md.output and "&lt;script&gt;alert(1)&lt;/script&gt;" in md.output
    )
    out = tmp_path / "report.md"
    res = cli.invoke(main, ["report", "--results", str(tmp_path), "--format", "markdown", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert EVIL not in out.read_text() and "&lt;script&gt;" in out.read_text()
    html_out = tmp_path / "report.html"
    assert cli.invoke(main, ["report", "--results", str(tmp_path), "--out", str(html_out)]).exit_code == 0
    assert EVIL not in html_out.read_text()
    board = board_table(aggregate(read_runs(tmp_path)), terminal=True)
    board.cells[0][1] = "[bold]x[/bold]"  # rich markup in a name prints as written
    text = render(board, 200)
    assert "[bold]x[/bold]" in text


# -- row 10: readable at 100 columns, names never cut, grid points told apart ----------------------------


def render(table, width: int) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(to_rich(table, width=width))
    return buf.getvalue()


@pytest.mark.parametrize("width", [100, 120])
def test_leaderboard_is_readable_on_a_narrow_terminal(tmp_path, cli, width):
    for model in ("lstm_noaf", "lstm_nfg", "depth_gated_lstm"):
        store(tmp_path, model=model)
    store(tmp_path, model="lstm", lr=3e-3)
    store(tmp_path, model="lstm", lr=1e-3)
    res = cli.invoke(main, ["leaderboard", "--results", str(tmp_path)], env={"COLUMNS": str(width)})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert max(map(len, lines)) <= width
    assert "…" not in res.output
    body = [line.split() for line in lines if line.startswith(" copy")]
    assert {b[1] for b in body} == {"lstm_noaf", "lstm_nfg", "depth_gated_lstm", "lstm"}
    lstm = sorted(line for line in lines if " lstm " in line)
    assert "lr=0.001" in lstm[0] + lstm[1] and "lr=0.003" in lstm[0] + lstm[1]
    assert "0.550 ± 0.635" in res.output  # the accuracy, whole
    assert "Left out to fit" in res.output


def test_sweep_progress_lines_name_the_grid_point():
    from seqbench.config import make_run_config
    from seqbench.sweep import describe

    config = make_run_config("copy", "lstm", preset="smoke", lr=0.003)
    assert "lr=0.003" in describe(config, ("lr",))


# -- row 11: did-you-mean on the leaderboard ------------------------------------------------------------


def test_leaderboard_with_a_misspelt_task_suggests_the_name(tmp_path, cli):
    store(tmp_path)
    res = cli.invoke(main, ["leaderboard", "--results", str(tmp_path), "--task", "cpoy"])
    assert res.exit_code == 2 and "Did you mean 'copy'" in res.output
    res = cli.invoke(main, ["leaderboard", "--results", str(tmp_path), "--model", "lstn"])
    assert res.exit_code == 2 and "Did you mean 'lstm'" in res.output
    res = cli.invoke(main, ["leaderboard", "--results", str(tmp_path), "--task", "adding"])
    assert res.exit_code == 0 and "No runs stored" in res.output  # a real task with nothing stored yet


# -- row 12: ls plugins exits 1 when a plugin fails to import -------------------------------------------


def test_ls_plugins_exits_1_on_a_broken_plugin(cli, extra_entry_points):
    assert cli.invoke(main, ["ls", "plugins"]).exit_code == 0
    extra_entry_points(
        MODELS, FakeEntryPoint("broken", BROKEN_IMPORT, package="broken-plugin", version="0.3")
    )
    res = cli.invoke(main, ["ls", "plugins"])
    assert res.exit_code == 1 and "broken-plugin==0.3" in res.output and "Failed to load" in res.output


# -- row 14: the horizon threshold is an accuracy ------------------------------------------------------


@pytest.mark.parametrize("threshold,code", [("2", 2), ("0", 2), ("-0.5", 2), ("1", 0), ("0.5", 0)])
def test_threshold_outside_0_1_is_rejected(tmp_path, cli, threshold, code):
    store(tmp_path)
    res = cli.invoke(main, ["leaderboard", "--results", str(tmp_path), "--threshold", threshold])
    assert res.exit_code == code, res.output
    if code:
        assert "--threshold" in res.output and "Traceback" not in res.output
