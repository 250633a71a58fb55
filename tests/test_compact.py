"""Issue 20, row 19: `seqbench compact` merges one-run files without losing or doubling a run, with a writer
running meanwhile, a reader reading meanwhile, and a crash between writing the merged file and removing its
sources; stale partials go; the leaderboard reads both layouts."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from seqbench import compact as cp
from seqbench.cli import main
from seqbench.store import RUN_SCHEMA, read_curves, read_runs, write_run


def put(root, i: int) -> str:
    run_id = f"run-{i:05d}"
    row = dict.fromkeys(RUN_SCHEMA.names) | {
        "run_id": run_id,
        "kind": "run",
        "task": "copy",
        "model": "lstm",
        "config_hash": "h",
        "preset": "smoke",
        "seed": i,
        "status": "ok",
        "accuracy": 0.5,
    }
    curve = [
        {"run_id": run_id, "step": s, "samples_seen": s, "train_time_s": 0.1, "split": "train"}
        | {"length": None, "metric": "loss", "value": 1.0 / s}
        for s in (1, 2)
    ]
    write_run(root, row, curve)
    return run_id


def parquet_files(root, sub="runs"):
    return sorted(p.name for p in (root / sub).glob("*.parquet"))


def test_compact_merges_runs_and_curves_and_the_leaderboard_reads_both_layouts(tmp_path):
    ids = {put(tmp_path, i) for i in range(12)}
    cli = CliRunner()
    before = cli.invoke(main, ["leaderboard", "--results", str(tmp_path), "--format", "csv"]).output
    res = cli.invoke(main, ["compact", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "runs: 12 files" in res.output and "curves: 12 files" in res.output
    assert len(parquet_files(tmp_path)) == 1 and len(parquet_files(tmp_path, "curves")) == 1
    put(tmp_path, 99)  # a new one-run file beside the merged one: both layouts at once
    runs = read_runs(tmp_path)
    assert set(runs["run_id"]) == ids | {"run-00099"} and runs["run_id"].is_unique
    assert len(read_curves(tmp_path)) == 2 * 13
    after = cli.invoke(main, ["leaderboard", "--results", str(tmp_path), "--format", "csv"])
    assert after.exit_code == 0
    b, a = before.splitlines()[1].split(","), after.output.splitlines()[1].split(",")
    assert a[:5] == b[:5] and (b[5], a[5]) == ("12", "13")  # task..preset equal; seeds 12 then 13
    again = cli.invoke(main, ["compact", "--results", str(tmp_path)])
    assert again.exit_code == 0 and len(parquet_files(tmp_path)) == 1
    assert len(read_runs(tmp_path)) == 13


def test_a_crash_between_merging_and_removing_loses_nothing_and_doubles_nothing(tmp_path, monkeypatch):
    ids = {put(tmp_path, i) for i in range(6)}

    def crash(sources, keep):
        raise KeyboardInterrupt("killed between the merged file's rename and the sources' removal")

    monkeypatch.setattr(cp, "remove_sources", crash)
    with pytest.raises(KeyboardInterrupt):
        cp.compact(tmp_path)
    assert len(parquet_files(tmp_path, "curves")) == 7  # merged file in place, sources still there
    runs, curves = read_runs(tmp_path), read_curves(tmp_path)
    assert sorted(runs["run_id"]) == sorted(ids) and len(curves) == 12
    monkeypatch.undo()
    cp.compact(tmp_path)  # the next compaction merges the merged file too and drops the duplicates
    assert len(parquet_files(tmp_path)) == 1 and sorted(read_runs(tmp_path)["run_id"]) == sorted(ids)
    assert len(read_curves(tmp_path)) == 12


def test_a_crash_while_writing_the_merged_file_leaves_the_sources(tmp_path, monkeypatch):
    ids = {put(tmp_path, i) for i in range(4)}

    def dies(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cp.pq, "write_table", dies)
    with pytest.raises(OSError):
        cp.compact(tmp_path)
    assert len(parquet_files(tmp_path)) == 4 and set(read_runs(tmp_path)["run_id"]) == ids


def test_stale_partials_are_removed_and_fresh_ones_kept(tmp_path):
    put(tmp_path, 0)
    stale, fresh = tmp_path / "runs" / ".tmp-dead.partial", tmp_path / "runs" / ".tmp-live.partial"
    for p in (stale, fresh):
        p.write_bytes(b"half a file")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    res = CliRunner().invoke(main, ["compact", "--results", str(tmp_path)])
    assert res.exit_code == 0 and "1 stale partial files removed" in res.output
    assert fresh.exists() and not stale.exists()


def test_a_second_compaction_at_once_is_refused(tmp_path):
    import fcntl

    put(tmp_path, 0)
    with open(tmp_path / cp.LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        res = CliRunner().invoke(main, ["compact", "--results", str(tmp_path)])
    assert res.exit_code == 1 and "Another `seqbench compact` is running" in res.output


WRITER = """
import sys
from tests.test_compact import put
for i in range(int(sys.argv[2])):
    put(sys.argv[1], i)
"""


def test_a_writer_and_a_reader_running_meanwhile_lose_nothing_and_see_no_run_twice(tmp_path):
    """A writer process stores 150 runs while compactions run over and over and a reader reads."""
    n = 150
    put(tmp_path, 10_000)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(n)], env=env)
    seen_problems: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                ids = read_runs(tmp_path)["run_id"]
            except Exception as exc:
                seen_problems.append(f"the reader failed: {exc!r}")
                continue
            if not ids.is_unique:
                seen_problems.append("a run read twice")
            if "run-10000" not in set(ids):
                seen_problems.append("a stored run missing")

    t = threading.Thread(target=reader)
    t.start()
    compactions = 0
    try:
        while writer.poll() is None:
            cp.compact(tmp_path)
            compactions += 1
    finally:
        stop.set()
        t.join()
        writer.wait(timeout=120)
    cp.compact(tmp_path)
    runs = read_runs(tmp_path)
    assert writer.returncode == 0 and compactions >= 2
    assert sorted(runs["run_id"]) == sorted([f"run-{i:05d}" for i in range(n)] + ["run-10000"])
    assert len(read_curves(tmp_path)) == 2 * (n + 1)
    assert not seen_problems, seen_problems[:3]
