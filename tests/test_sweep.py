"""Sweeps: resumable, failure-isolated, the same on the serial and the Dask executor."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqbench import sweep as sw
from seqbench.cli import main
from seqbench.executors import EXECUTORS
from seqbench.registry import MODELS
from seqbench.store import read_runs
from tests import fakes
from tests.fakes import FakeEntryPoint

SMALL = [
    "--task",
    "copy",
    "--task",
    "adding",
    "--model",
    "rnn",
    "--model",
    "lstm",
    "--seeds",
    "2",
    "--preset",
    "smoke",
    "--steps",
    "4",
    "--threads",
    "1",
]


def small_spec(results: Path, **extra) -> sw.SweepSpec:
    return sw.make_spec(
        {
            "tasks": ["copy", "adding"],
            "models": ["rnn", "lstm"],
            "seeds": 2,
            "preset": "smoke",
            "train": {"steps": 4},
            "threads": 1,
            "results": str(results),
            **extra,
        }
    )


def ok_keys(results: Path) -> set[tuple[str, int]]:
    runs = read_runs(results)
    ok = runs[runs["status"] == "ok"]
    assert not ok.duplicated(["config_hash", "seed"]).any(), "a configuration was stored twice"
    return set(zip(ok["config_hash"], ok["seed"], strict=True))


def test_expand_crosses_everything_and_hashes_are_stable(tmp_path):
    spec = small_spec(tmp_path, grid={"lr": [1e-3, 3e-3]}, params=[2000, 4000])
    configs = sw.expand(spec)
    assert len(configs) == 2 * 2 * 2 * 2 * 2  # tasks x models x lr x params x seeds
    assert len({(c.config_hash(), c.seed) for c in configs}) == len(configs)
    assert {c.train.lr for c in configs} == {1e-3, 3e-3} and {c.params_target for c in configs} == {
        2000,
        4000,
    }
    assert [c.config_hash() for c in sw.expand(spec)] == [c.config_hash() for c in configs]


def test_options_that_do_not_fit_a_task_fail_before_anything_runs(tmp_path):
    res = CliRunner().invoke(
        main, ["sweep", *SMALL, "--task-opt", "max_length=4", "--results", str(tmp_path)]
    )
    assert res.exit_code == 2 and "task 'adding': max_length: unknown option" in res.output
    assert read_runs(tmp_path).empty


def test_grid_keys_and_unknown_settings_are_checked(tmp_path):
    with pytest.raises(sw.OptionsError, match="Grid key 'lrr'"):
        sw.expand(small_spec(tmp_path, grid={"lrr": [1]}))
    with pytest.raises(sw.OptionsError, match="jbos: unknown setting"):
        sw.make_spec({"tasks": ["copy"], "models": ["rnn"], "jbos": 2})


def test_each_run_gets_a_fresh_process_by_default(tmp_path):
    """The default serial sweep starts a process per run, so that CPU peak memory is measured from a clean
    allocator; the rows come back the same way."""
    args = ["sweep", "--task", "copy", "--model", "rnn", "--seeds", "2", "--preset", "smoke", "--steps", "3"]
    res = CliRunner().invoke(main, [*args, "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    runs = read_runs(tmp_path)
    assert list(runs["status"]) == ["ok", "ok"] and (runs["peak_memory_bytes"] > 0).all()


def test_sweep_stores_eight_rows_then_none(tmp_path):
    cli = CliRunner()
    res = cli.invoke(main, ["sweep", *SMALL, "--results", str(tmp_path), "--same-process"])
    assert res.exit_code == 0, res.output
    assert "8 to run" in res.output and "[8/8]" in res.output
    assert len(ok_keys(tmp_path)) == 8
    again = cli.invoke(main, ["sweep", *SMALL, "--results", str(tmp_path)])
    assert again.exit_code == 0 and "8 already stored, 0 to run" in again.output
    assert len(read_runs(tmp_path)) == 8
    rerun = cli.invoke(main, ["sweep", *SMALL, "--results", str(tmp_path), "--rerun", "--same-process"])
    assert rerun.exit_code == 0 and len(read_runs(tmp_path)) == 16


def test_a_sweep_file_gives_the_same_sweep(tmp_path):
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(
        "tasks: [copy, adding]\nmodels: [rnn, lstm]\nseeds: 2\npreset: smoke\ntrain: {steps: 4}\nthreads: 1\n"
        "model_options: {num_layers: 1}\n"
    )
    toml_file = tmp_path / "sweep.toml"
    toml_file.write_text(
        'tasks = ["copy", "adding"]\nmodels = ["rnn", "lstm"]\nseeds = 2\npreset = "smoke"\n'
        "threads = 1\n[train]\nsteps = 4\n[model_options]\nnum_layers = 1\n"
    )
    from_flags = sw.expand(
        sw.make_spec(
            {
                "tasks": ["copy", "adding"],
                "models": ["rnn", "lstm"],
                "seeds": 2,
                "preset": "smoke",
                "train": {"steps": 4},
                "threads": 1,
                "model_options": {"num_layers": 1},
            }
        )
    )
    for f in (sweep_file, toml_file):
        assert [c.config_hash() for c in sw.expand(sw.make_spec(sw.load_spec_file(f)))] == [
            c.config_hash() for c in from_flags
        ]


def test_a_failing_run_does_not_stop_the_others(tmp_path, extra_entry_points, monkeypatch):
    extra_entry_points(MODELS, FakeEntryPoint("exploding", "tests.fakes:ExplodingModel"))
    # monkeypatch restores the class attributes: other tests use the same fake
    for attr, value in {"calls": 0, "after": 0, "exc": RuntimeError}.items():
        monkeypatch.setattr(fakes.ExplodingModel, attr, value)
    res = CliRunner().invoke(
        main,
        [
            "sweep",
            "--task",
            "copy",
            "--model",
            "exploding",
            "--model",
            "rnn",
            "--seeds",
            "2",
            "--preset",
            "smoke",
            "--steps",
            "3",
            "--results",
            str(tmp_path),
            "--same-process",  # the fake plugin is registered in this process only
        ],
    )
    assert res.exit_code == 2, res.output  # the exit status counts the failed runs
    runs = read_runs(tmp_path)
    assert sorted(runs["status"]) == ["error", "error", "ok", "ok"]
    assert "2 ok, 2 failed" in res.output


def test_killed_midway_then_rerun_completes(tmp_path):
    cmd = [sys.executable, "-m", "seqbench.cli", "sweep", *SMALL, "--steps", "60", "--results", str(tmp_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "runs").glob("*.parquet"))) < 3:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up: the run in flight is simply lost
    proc.wait(30)
    stored = len(ok_keys(tmp_path))
    assert 3 <= stored < 8
    res = CliRunner().invoke(main, ["sweep", *SMALL, "--steps", "60", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert f"{stored} already stored, {8 - stored} to run" in res.output
    assert len(ok_keys(tmp_path)) == 8


@pytest.mark.dask
def test_dask_local_cluster_stores_the_same_rows(tmp_path):
    serial, dask_dir = tmp_path / "serial", tmp_path / "dask"
    assert CliRunner().invoke(main, ["sweep", *SMALL, "--results", str(serial)]).exit_code == 0
    res = CliRunner().invoke(
        main, ["sweep", *SMALL, "--results", str(dask_dir), "--executor", "dask", "--jobs", "2"]
    )
    assert res.exit_code == 0, res.output
    assert ok_keys(dask_dir) == ok_keys(serial)
    a, b = read_runs(serial), read_runs(dask_dir)
    merged = a.merge(b, on=["config_hash", "seed"])
    assert (merged["loss_x"] == merged["loss_y"]).all()  # seeded: the executor changes nothing


@pytest.mark.dask
def test_dask_feed_keeps_a_run_per_worker_and_asks_again_as_each_finishes(tmp_path):
    """`run_feed` (a study's climbs): the feed is asked whenever a worker frees, after the finished run's
    row is stored, so a run it hands out only once another's row is stored starts without waiting for the
    rest; never more runs in flight than workers; every run handed out runs once."""
    configs = sw.expand(small_spec(tmp_path))[:5]
    first, after = configs[0], configs[1]  # `after` can start only once `first` is stored
    handed: list = []
    asked: list[tuple[int, int]] = []
    running = {"now": 0, "most": 0}

    def feed(n: int) -> list:
        stored = set(read_runs(tmp_path)["config_hash"] + "/" + read_runs(tmp_path)["seed"].astype(str))
        ready = [
            c
            for c in configs
            if c not in handed and (c is not after or f"{first.config_hash()}/{first.seed}" in stored)
        ]
        asked.append((n, len(ready[:n])))
        handed.extend(ready[:n])
        return ready[:n]

    def on_event(kind: str, config, outcome) -> None:
        running["now"] += 1 if kind == "start" else -1
        running["most"] = max(running["most"], running["now"])

    executor = EXECUTORS["dask"](jobs=2, same_process=True)
    done = [c for c, o in executor.run_feed(feed, str(tmp_path), on_event) if o.ok]
    assert sorted(c.config_hash() + str(c.seed) for c in done) == sorted(
        c.config_hash() + str(c.seed) for c in configs
    )
    assert done.index(first) < done.index(after) and running["most"] == 2
    assert asked[0] == (1, 1) and all(
        n <= 2 for n, _ in asked
    )  # one first (it picks the devices), then slots
    assert len(asked) >= len(configs)  # asked again after every finished run


def _register_suicide_model() -> None:
    """Runs on every Dask worker: the fake provider exists there too."""
    from seqbench.registry import MODELS as worker_models

    base = worker_models._entry_points
    worker_models._entry_points = lambda: [*base(), FakeEntryPoint("suicide", "tests.fakes:SuicideModel")]
    worker_models.refresh()
    worker_models._loaded["suicide"] = fakes.SuicideModel


@pytest.mark.dask
def test_a_worker_killed_mid_run_fails_only_its_run(tmp_path, extra_entry_points):
    import cloudpickle

    cloudpickle.register_pickle_by_value(fakes)  # the workers need not import the tests package
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    extra_entry_points(MODELS, FakeEntryPoint("suicide", "tests.fakes:SuicideModel"))
    spec = sw.make_spec(
        {
            "tasks": ["copy"],
            "models": ["rnn", "suicide"],
            "seeds": 2,
            "preset": "smoke",
            "train": {"steps": 3},
            "threads": 1,
            "results": str(tmp_path),
        }
    )
    executor = EXECUTORS["dask"](jobs=2, setup=_register_suicide_model)
    outcomes = list(executor.run(sw.expand(spec), str(tmp_path), lambda *a: None))
    assert len(outcomes) == 4
    runs = read_runs(tmp_path)
    by_model = runs.groupby("model")["status"].apply(sorted).to_dict()
    assert by_model == {"rnn": ["ok", "ok"], "suicide": ["error", "error"]}
    # each run has a process of its own on the worker (true CPU peak memory): that process died, not the worker
    assert runs.loc[runs["model"] == "suicide", "error"].str.contains("the run's process died").all()


def test_executors_are_one_registry_behind_the_cli_and_the_spec(tmp_path):
    from seqbench.errors import OptionsError
    from seqbench.executors import Executor, get_executor

    assert set(EXECUTORS) == {"serial", "dask"}
    for name, cls in EXECUTORS.items():
        assert issubclass(cls, Executor) and cls.name == name and cls.help
    choices = next(p for p in main.commands["sweep"].params if p.name == "executor").type.choices
    assert list(choices) == list(EXECUTORS)  # the CLI's choices come from the registry
    with pytest.raises(OptionsError, match="Did you mean 'dask'"):
        get_executor("dsak")
    with pytest.raises(OptionsError, match="unknown executor 'ray'"):
        small_spec(tmp_path, executor="ray")


def test_an_executors_per_run_defaults_reach_the_python_api(tmp_path):
    """One torch thread per run on Dask comes from the executor, not the CLI: a spec built in Python gets it,
    and an explicit thread count still wins."""
    spec = sw.make_spec({"tasks": ["copy"], "models": ["rnn"], "preset": "smoke", "executor": "dask"})
    assert {c.train.threads for c in sw.expand(spec)} == {1}
    spec = sw.make_spec({"tasks": ["copy"], "models": ["rnn"], "preset": "smoke", "executor": "serial"})
    assert {c.train.threads for c in sw.expand(spec)} == {None}
    spec = sw.make_spec(
        {"tasks": ["copy"], "models": ["rnn"], "preset": "smoke", "executor": "dask", "threads": 2}
    )
    assert {c.train.threads for c in sw.expand(spec)} == {2}


def test_the_serial_executor_yields_an_outcome_per_run(tmp_path):
    from seqbench.executors import Outcome

    events = []
    executor = sw.executor_for(small_spec(tmp_path, models=["rnn"], tasks=["copy"], same_process=True))
    pairs = list(
        executor.run(
            sw.expand(small_spec(tmp_path, models=["rnn"], tasks=["copy"])),
            str(tmp_path),
            lambda kind, config, outcome: events.append((kind, outcome)),
        )
    )
    assert [type(o) for _, o in pairs] == [Outcome, Outcome] and all(o.ok for _, o in pairs)
    assert [k for k, _ in events] == ["start", "done", "start", "done"]
    assert {o.run_id for _, o in pairs} == set(read_runs(tmp_path)["run_id"])


def test_a_task_pattern_is_a_group(tmp_path):
    """`--task 'chomsky/*'` runs the whole suite as one sweep."""
    spec = sw.make_spec({"tasks": ["chomsky/*"], "models": ["lstm"], "results": str(tmp_path)})
    configs = sw.expand(spec)
    assert len(configs) == 15 and all(c.task.startswith("chomsky/") for c in configs)
    with pytest.raises(sw.OptionsError, match="No task matches"):
        sw.expand(sw.make_spec({"tasks": ["nothing/*"], "models": ["lstm"], "results": str(tmp_path)}))
