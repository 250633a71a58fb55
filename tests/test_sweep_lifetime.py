"""Issue 20, rows 2 and 20: a sweep's processes die with it (kill -9 or SIGTERM, serial or Dask), and each
run's CPU peak memory is its own on every executor (a fresh process per run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqbench.cli import main
from seqbench.store import read_runs

LONG = ["sweep", "--task", "copy", "--model", "rnn", "--preset", "smoke", "--steps", "1000000"]


def marked(mark: str) -> list[int]:
    """Live processes whose environment carries `mark` (children inherit it; zombies show none)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if mark.encode() in (proc / "environ").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            pass
    return pids


def start_sweep(tmp_path, *extra: str) -> tuple[subprocess.Popen, str]:
    mark = f"SEQBENCH_TEST_MARK={uuid.uuid4().hex}"
    key, value = mark.split("=")
    env = {**os.environ, key: value, "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "seqbench.cli", *LONG, *extra, "--results", str(tmp_path)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, mark


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_serial_sweep_takes_its_run_process_along(tmp_path, sig):
    proc, mark = start_sweep(tmp_path)
    try:
        wait_for(lambda: len(marked(mark)) >= 2, 120, "the sweep's run process")  # sweep + its run
        time.sleep(2)
        proc.send_signal(sig)
        # Generous bounds: on a loaded 2-core machine the run process may take a minute to store its row
        # and shut torch down (the orphan it replaced never ended at all).
        out, _ = proc.communicate(timeout=300)
        wait_for(lambda: not marked(mark), 300, "no process of the sweep left")
    finally:
        for pid in marked(mark):
            os.kill(pid, signal.SIGKILL)
        proc.kill()
    if sig == signal.SIGTERM:  # an interruption like Ctrl-C: said so, exit 130
        assert proc.returncode == 130 and "Interrupted: stored runs are kept" in out, out
        assert "Traceback" not in out
    runs = read_runs(tmp_path)
    assert set(runs["status"]) <= {"interrupted"}  # a run that got going stores itself as interrupted
    assert not list(tmp_path.rglob("*.partial"))


@pytest.mark.dask
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux's")
def test_a_killed_dask_sweep_takes_its_workers_along(tmp_path):
    proc, mark = start_sweep(tmp_path, "--executor", "dask", "--jobs", "1")
    try:
        # sweep, its Dask worker, the worker's run process (and possibly Dask's helpers)
        wait_for(lambda: len(marked(mark)) >= 3, 180, "the Dask worker's run process")
        time.sleep(2)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=300)
        wait_for(lambda: not marked(mark), 300, "no process of the sweep left")
    finally:
        for pid in marked(mark):
            os.kill(pid, signal.SIGKILL)
        proc.kill()


@pytest.mark.dask
def test_dask_peak_memory_is_each_runs_own(tmp_path):
    """Two runs one after another on one Dask worker: the second reads as much memory as the first (a
    process that had run before read 14 instead of 176 MiB), and both as much as a serial run's."""
    args = ["sweep", "--task", "copy", "--model", "lstm", "--seeds", "2", "--steps", "3"]
    args += ["--grid", "eval_size=16", "--task-opt", "max_length=20"]
    serial = CliRunner().invoke(main, [*args, "--results", str(tmp_path / "serial")])
    dask = CliRunner().invoke(
        main, [*args, "--executor", "dask", "--jobs", "1", "--results", str(tmp_path / "d")]
    )
    assert serial.exit_code == 0 and dask.exit_code == 0, serial.output + dask.output
    s = read_runs(tmp_path / "serial").sort_values("seed")["peak_memory_bytes"].tolist()
    d = read_runs(tmp_path / "d").sort_values("created_at")["peak_memory_bytes"].tolist()
    assert min(s) > 30 * 2**20  # a real figure to compare with (the LSTM's activations at batch 32)
    assert all(0.6 * min(s) < m < 1.6 * max(s) for m in d), (s, d)
