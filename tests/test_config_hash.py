"""Options resolved once: one configuration, one config_hash, however it was spelled; stored rows keep
grouping with new runs of the same configuration."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqbench import sweep as sw
from seqbench.cli import main
from seqbench.config import make_run_config
from seqbench.errors import OptionsError
from seqbench.leaderboard import aggregate
from seqbench.registry import MODELS, TASKS
from seqbench.runner import run
from seqbench.store import RUNS, read_runs, write_run

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"


def test_four_spellings_of_one_configuration_give_one_hash():
    spellings = [{"max_length": 10}, {"max_length": "10"}, {"max_length": 10.0}]
    configs = [make_run_config("copy", "lstm", task_options=o) for o in spellings]
    assert len({c.config_hash() for c in configs}) == 1
    assert configs[0].task_options == {
        "bits": 8,
        "min_length": 1,
        "max_length": 10,
        "eval_lengths": (10, 20, 30, 50, 120),
    }
    # A default given explicitly is the default left alone (adding's T defaults to 100).
    explicit = make_run_config("adding", "lstm", task_options={"T": 100}, model_options={"forget_bias": 1})
    assert explicit.config_hash() == make_run_config("adding", "lstm").config_hash()
    assert make_run_config("adding", "lstm", task_options={"T": 50}).config_hash() != explicit.config_hash()


def test_a_version_bump_is_a_different_experiment(monkeypatch):
    lstm = MODELS.get("lstm")
    plain = make_run_config("copy", "lstm").config_hash()
    assert plain == "20775219a8f297fd"  # the stored quick copy/lstm runs' hash, unchanged
    monkeypatch.setattr(lstm, "version", 1, raising=False)  # version 1 is the unversioned definition
    assert make_run_config("copy", "lstm").config_hash() == plain
    monkeypatch.setattr(lstm, "version", 2, raising=False)
    assert make_run_config("copy", "lstm").config_hash() != plain
    row = run(make_run_config("copy", "lstm", preset="smoke", steps=1), store=False)
    assert row["model_version"] == 2 and row["task_version"] == 1


def test_rows_stored_before_options_were_resolved_are_rehashed_on_read(tmp_path):
    row = run(make_run_config("adding", "rnn", preset="smoke", steps=2, eval_every=2), tmp_path, store=False)
    # As a row of the old code stored it: the options as given (a default spelled out), no versions.
    legacy = {**row, "run_id": "legacy", "task_options": '{"T": 100}', "model_options": "{}"}
    legacy.update(config_hash="0123456789abcdef", task_version=None, model_version=None)
    write_run(tmp_path, legacy)
    write_run(tmp_path, row)
    stored = read_runs(tmp_path)
    assert stored["config_hash"].nunique() == 1 and stored["config_hash"].iloc[0] == row["config_hash"]


def _reference_store(tmp_path: Path, task: str, model: str) -> tuple[Path, sw.SweepSpec]:
    """A store holding the committed reference rows of one (task, model), and the sweep that made them."""
    values = {**sw.load_spec_file(REFERENCE / f"{task}.yaml"), "models": [model], "results": str(tmp_path)}
    spec = sw.make_spec(values)
    hashes = {c.config_hash() for c in sw.expand(spec)}  # the sweep's rows, not the study's beside them
    runs = read_runs(REFERENCE)
    ids = runs.loc[
        (runs["task"] == task) & (runs["model"] == model) & runs["config_hash"].isin(hashes), "run_id"
    ]
    (tmp_path / RUNS).mkdir(parents=True)
    for run_id in ids:
        shutil.copy(REFERENCE / RUNS / f"{run_id}.parquet", tmp_path / RUNS)
    return tmp_path, spec


def test_a_sweep_over_stored_reference_configurations_runs_nothing(tmp_path):
    store, spec = _reference_store(tmp_path, "adding", "rnn")
    assert len(sw.expand(spec)) == 3 and sw.pending(sw.expand(spec), store) == []
    res = CliRunner().invoke(
        main,
        ["sweep", "--config", str(REFERENCE / "adding.yaml"), "--model", "rnn", "--results", str(store)],
    )
    assert res.exit_code == 0, res.output
    assert "3 runs, 3 already stored, 0 to run" in res.output


@pytest.mark.slow
def test_a_new_run_of_a_reference_configuration_joins_its_leaderboard_row(tmp_path, monkeypatch):
    store, spec = _reference_store(tmp_path, "adding", "rnn")
    before = aggregate(read_runs(store))
    assert len(before) == 1 and before.iloc[0]["seeds"] == 3
    config = sw.expand(spec.model_copy(update={"seeds": [3]}))[0]
    # The reference configuration as it is (300 steps); declared solved at its first evaluation so that
    # the test takes seconds. The hash depends on the configuration, never on how far the run went.
    monkeypatch.setattr(TASKS.get("adding"), "solved", lambda self, metrics, threshold: True)
    row = run(config, store)
    assert row["status"] == "ok" and row["steps"] == 100
    after = aggregate(read_runs(store))
    assert len(after) == 1 and after.iloc[0]["seeds"] == 4
    assert after.iloc[0]["config_hash"] == before.iloc[0]["config_hash"] == row["config_hash"]


@pytest.mark.parametrize(
    "model,options,message",
    [("lstm", {"num_layers": 0}, "num_layers"), ("transformer", {"heads": 0}, "heads")],
)
def test_values_a_constructor_refuses_fail_at_config_time(model, options, message):
    with pytest.raises(OptionsError, match=message):
        make_run_config("copy", model, model_options=options)


def test_a_refused_value_exits_2_and_stores_nothing(tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "run",
            "--task",
            "copy",
            "--model",
            "gru_cho",
            "--model-opt",
            "num_layers=0",
            "--results",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 2 and "num_layers" in res.output, res.output
    assert read_runs(tmp_path).empty
