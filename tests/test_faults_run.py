"""Issue 20, rows 1, 3, 5-8 and 13: faults around one run, each injected and its outcome asserted (exit status,
message, rows on disk)."""

from __future__ import annotations

import errno
import os
import sys

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from seqbench import metrics, runner
from seqbench.cli import main
from seqbench.config import make_run_config
from seqbench.registry import MODELS
from seqbench.store import read_runs
from seqbench.threads import ThreadProbe
from tests.fakes import FakeEntryPoint

SMOKE = ["--task", "copy", "--preset", "smoke", "--steps", "2", "--task-opt", "max_length=3"]


@pytest.fixture
def cli():
    return CliRunner()


def one_line_error(res, code: int = 2) -> str:
    """The command failed with `code`, said so in one line, and raised nothing (no traceback)."""
    assert res.exit_code == code, res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), lines
    assert "Traceback" not in res.output
    return res.output


def unwritable(tmp_path):
    """A directory nothing can be created in, even as root (whom permission bits do not stop)."""
    if os.geteuid() != 0:
        d = tmp_path / "ro"
        d.mkdir()
        d.chmod(0o500)
        return d
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return blocker / "results"  # a directory under a regular file: NotADirectoryError


# -- row 3: a read-only store ---------------------------------------------------------------------------


def test_a_read_only_store_is_refused_before_training(tmp_path, cli):
    where = unwritable(tmp_path)
    res = cli.invoke(main, ["run", *SMOKE, "--model", "rnn", "--results", str(where)])
    out = one_line_error(res, 2)
    assert "Cannot store results under" in out and "--results" in out
    assert "training for up to" not in out


def test_a_store_that_fails_at_the_end_keeps_the_run_in_a_fallback(tmp_path, cli, monkeypatch):
    fallback = tmp_path / "fallback"
    monkeypatch.setenv("SEQBENCH_FALLBACK_DIR", str(fallback))
    real = runner.write_run

    def disk_full(results_dir, row, curve=None):
        if str(results_dir) == str(tmp_path / "store"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(results_dir, row, curve)

    monkeypatch.setattr(runner, "write_run", disk_full)
    res = cli.invoke(main, ["run", *SMOKE, "--model", "rnn", "--results", str(tmp_path / "store")])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    assert "No space left on device" in res.output and f"{fallback}/runs/" in res.output
    kept = read_runs(fallback)
    assert len(kept) == 1 and kept["status"].iloc[0] == "ok" and read_runs(tmp_path / "store").empty


# -- rows 5 and 6: configuration errors are exit 2, nothing stored, a sweep stops before its first run ---


@pytest.mark.parametrize(
    "model,opt", [("lstm", "num_layers=0"), ("ntm", "memory_slots=0"), ("transformer", "heads=0")]
)
def test_a_value_the_model_refuses_is_a_configuration_error(tmp_path, cli, model, opt):
    res = cli.invoke(main, ["run", *SMOKE, "--model", model, "--model-opt", opt, "--results", str(tmp_path)])
    one_line_error(res, 2)
    assert read_runs(tmp_path).empty
    sweep = ["sweep", "--task", "copy", "--model", "rnn", "--model", model, "--model-opt", opt]
    res = cli.invoke(main, [*sweep, "--preset", "smoke", "--results", str(tmp_path)])
    assert res.exit_code == 2 and "sweep:" not in res.output  # stopped before announcing any run
    assert read_runs(tmp_path).empty


def test_a_bogus_kernel_setting_is_exit_2_before_anything_is_stored(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("SEQBENCH_LSTM_KERNEL", "bogus")
    res = cli.invoke(main, ["run", *SMOKE, "--model", "lstm_peephole", "--results", str(tmp_path)])
    out = one_line_error(res, 2)
    assert "SEQBENCH_LSTM_KERNEL must be auto, cpp or python, not 'bogus'" in out
    assert read_runs(tmp_path).empty


# -- row 7: one line, exit 2, what would be valid ----------------------------------------------------------


def test_report_into_an_unwritable_place(tmp_path, cli):
    res = cli.invoke(
        main, ["report", "--results", str(tmp_path), "--out", str(unwritable(tmp_path) / "r.html")]
    )
    assert "cannot write the report" in one_line_error(res, 2)


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("bad.yaml", "tasks: [copy\nmodels: lstm\n", "not valid YAML (line"),
        ("bad.toml", "tasks = [copy\n", "not valid TOML"),
    ],
)
def test_sweep_file_syntax_errors(tmp_path, cli, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    assert message in one_line_error(cli.invoke(main, ["sweep", "--config", str(path)]), 2)


@pytest.mark.parametrize(
    "args,message",
    [
        (["run", *SMOKE, "--model", "rnn", "--device", "gpu"], "use auto, cpu, cuda or cuda:N"),
        (["run", *SMOKE, "--model", "rnn", "--seed", "-1"], "--seed"),
        (["bench", "--model", "rnn", "--length", "0"], "--length"),
        (["bench", "--model", "rnn", "--hidden", "0"], "--hidden"),
        (["sweep", "--task", "copy", "--model", "rnn", "--device", "gpu"], "use auto, cpu, cuda or cuda:N"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(tmp_path, cli, args, message):
    res = cli.invoke(main, [*args, "--results", str(tmp_path)])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
    assert isinstance(res.exception, SystemExit)
    assert read_runs(tmp_path).empty


def test_dask_executor_without_dask(tmp_path, cli, monkeypatch):
    for name in ("dask", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # `import dask` now raises ImportError
    args = ["sweep", "--task", "copy", "--model", "rnn", "--preset", "smoke", "--executor", "dask"]
    res = cli.invoke(main, [*args, "--results", str(tmp_path)])
    assert (
        res.exit_code == 2 and 'pip install "seqbench[dask]"' in res.output and "Traceback" not in res.output
    )
    assert read_runs(tmp_path).empty


# -- row 8: the CPU allocator's failure is `oom` ----------------------------------------------------------


class Greedy(nn.Module):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.lin = nn.Linear(input_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.empty(2**45)  # 128 TiB: the CPU allocator refuses (RuntimeError, not torch.OutOfMemoryError)
        return self.lin(x)


def test_cpu_out_of_memory_is_stored_as_oom(tmp_path, cli, extra_entry_points):
    extra_entry_points(MODELS, FakeEntryPoint("greedy", "tests.test_faults_run:Greedy"))
    res = cli.invoke(main, ["run", *SMOKE, "--model", "greedy", "--results", str(tmp_path)])
    assert res.exit_code == 1 and "status oom" in res.output
    runs = read_runs(tmp_path)
    assert list(runs["status"]) == ["oom"] and "can't allocate memory" in runs["error"].iloc[0]


# -- rows 1 and 13: time, on a fake clock (no wall-clock assertion) ---------------------------------------


class FakeClock:
    now = 0.0

    @classmethod
    def perf_counter(cls) -> float:
        return cls.now


class Clocked(nn.Module):
    """Each forward advances the fake clock: `slow_with_many` s per step with more than one thread, else
    `fast` s; the first forward also does `one_off` s of first-use work (noted as such)."""

    slow_with_many, fast, one_off = 1.0, 0.1, 0.0
    calls = 0

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.lin = nn.Linear(input_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if type(self).calls == 0 and self.one_off:
            FakeClock.now += self.one_off
            metrics.note_one_off(self.one_off)
        type(self).calls += 1
        if self.training:
            FakeClock.now += self.slow_with_many if torch.get_num_threads() > 1 else self.fast
        return self.lin(x)


@pytest.fixture
def clocked(monkeypatch, extra_entry_points):
    extra_entry_points(MODELS, FakeEntryPoint("clocked", "tests.test_faults_run:Clocked"))
    monkeypatch.setattr(runner, "time", FakeClock)
    monkeypatch.setattr(Clocked, "calls", 0)
    return monkeypatch


def smoke_config(**train):
    return make_run_config("copy", "clocked", preset="smoke", task_options={"max_length": 3}, **train)


@pytest.mark.parametrize(
    "slow_with_many,fast,chosen,train_time",
    # warm-up step at 2 threads, then 1, 2, 1, 2, then 7 steps at the choice
    [(1.0, 0.1, 1, 1.0 + 2 * 0.1 + 2 * 1.0 + 7 * 0.1), (0.1, 1.0, 2, 0.1 + 2 * 1.0 + 2 * 0.1 + 7 * 0.1)],
)
def test_without_threads_a_run_probes_1_and_n_and_keeps_the_faster(
    tmp_path, clocked, slow_with_many, fast, chosen, train_time
):
    clocked.setattr(Clocked, "slow_with_many", slow_with_many)
    clocked.setattr(Clocked, "fast", fast)
    torch.set_num_threads(2)  # the autouse fixture restores it
    row = runner.run(smoke_config(steps=12), tmp_path)
    assert row["threads"] == chosen and read_runs(tmp_path)["threads"].iloc[0] == chosen
    assert row["train_time_s"] == pytest.approx(train_time)
    assert torch.get_num_threads() == 2  # restored after the run


def test_thread_probe_on_fake_timings():
    probe = ThreadProbe(rounds=2, many=4)
    seen = []
    for seconds in [0.9, 0.5, 0.2, 0.6, 0.3, 9, 9]:
        probe.before_step()
        seen.append(probe.threads)
        probe.after_step(seconds)
    # warm-up at 4, then 1, 4, 1, 4 (fastest: 1 -> 0.5, 4 -> 0.2), then 4 for good
    assert seen[:5] == [4, 1, 4, 1, 4] and probe.done and probe.threads == 4 and seen[5:] == [4, 4]
    assert ThreadProbe(many=1).steps == 0 and ThreadProbe(many=1).done


def test_an_explicit_thread_count_is_kept(tmp_path, clocked):
    torch.set_num_threads(2)
    assert runner.run(smoke_config(steps=8, threads=1), tmp_path)["threads"] == 1


def test_first_use_work_is_left_out_of_train_time(tmp_path, clocked):
    clocked.setattr(Clocked, "one_off", 100.0)
    row = runner.run(smoke_config(steps=4, threads=1), tmp_path)
    assert row["train_time_s"] == pytest.approx(4 * 0.1)  # four steps of 0.1 s, no 100 s build
    assert row["wall_time_s"] >= 100.0  # the build stays in wall time
