from __future__ import annotations

import json

import pytest

import seqbench
from seqbench.config import RunConfig, build_train_config, make_run_config
from seqbench.errors import OptionsError, UnknownNameError
from seqbench.registry import MODELS, TASKS
from seqbench.runner import run
from seqbench.store import RUN_SCHEMA, read_curves, read_runs
from tests.fakes import ExplodingModel, FakeEntryPoint


def config(task="copy", model="lstm", seed=0, preset="smoke", task_options=None, model_options=None, **train):
    cfg = build_train_config(preset, TASKS.get(task), MODELS.get(model), train)
    return RunConfig(
        task=task,
        model=model,
        seed=seed,
        preset=preset,
        train=cfg,
        task_options=task_options or {},
        model_options=model_options or {},
    )


def test_smoke_run_stores_a_complete_row(tmp_path):
    row = run(config(steps=6, eval_every=3), tmp_path)
    stored = read_runs(tmp_path)
    assert len(stored) == 1 and stored.iloc[0]["run_id"] == row["run_id"]
    r = stored.iloc[0]
    assert r["status"] == "ok" and r["steps"] == 6 and r["samples_seen"] == 6 * 8
    for col in (
        "seqbench_version",
        "git_sha",
        "config_hash",
        "model_provider",
        "task_provider",
        "device",
        "device_name",
        "torch_version",
        "memory_kind",
    ):
        assert isinstance(r[col], str) and r[col], col
    assert r["model_provider"].startswith("seqbench==")
    assert r["kernels"] == ""  # nn.LSTM: no loop of seqbench's own
    assert r["params"] > 0 and r["state_size"] == 2 * 16
    assert r["train_tokens_per_s"] > 0 and r["infer_tokens_per_s"] > 0 and r["peak_memory_bytes"] >= 0
    by_length = json.loads(r["accuracy_by_length"])
    assert set(by_length) == {"10", "20", "30", "50", "120"}
    assert r["accuracy"] == by_length["20"]
    assert {"bit_errors", "bit_accuracy", "cost_bits"} <= set(json.loads(r["metrics"]))
    assert set(row) == set(RUN_SCHEMA.names)
    curve = read_curves(tmp_path)
    assert set(curve["step"]) == {3, 6} and set(curve["split"]) == {"train", "eval", "val"}
    # The validation set: its own sequences, at the training length, at the end only (monitor = test)
    val = curve[curve["split"] == "val"]
    assert set(val["step"]) == {6} and set(val["length"]) == {20}
    assert 0 <= r["val_accuracy"] <= 1 and r["val_loss"] > 0


def test_validation_set_is_not_the_test_set():
    import torch

    from seqbench.runner import EVAL_SEED, VAL_SEED, Evaluator

    task = seqbench.load_task("copy", max_length=5)
    test = Evaluator(task, 8, torch.device("cpu"), seed=EVAL_SEED, lengths=[5]).sets[5][0]
    val = Evaluator(task, 8, torch.device("cpu"), seed=VAL_SEED, lengths=[5]).sets[5][0]
    assert not torch.equal(test.inputs, val.inputs)
    again = Evaluator(task, 8, torch.device("cpu"), seed=VAL_SEED, lengths=[5]).sets[5][0]
    assert torch.equal(val.inputs, again.inputs)  # fixed: every model and seed sees the same set


def test_monitor_validation_keeps_the_test_set_out_of_training(tmp_path):
    """With monitor = validation the evaluations during training (and the solve that stops a run) read the
    validation set; the test set is evaluated once, at the end, and decides nothing."""
    config = make_run_config(
        "copy",
        "lstm",
        preset="smoke",
        steps=6,
        eval_every=2,
        task_options={"max_length": 5},
        monitor="validation",
    )
    row = run(config, tmp_path)
    curve = read_curves(tmp_path)
    test = curve[curve["split"] == "eval"]
    val = curve[(curve["split"] == "val") & (curve["metric"] == "accuracy")]
    assert set(test["step"]) == {row["steps"]}  # only the final evaluation
    assert sorted(val["step"]) == [2, 4, 6]
    assert row["val_accuracy"] == val[val["step"] == 6]["value"].iloc[0]
    assert (
        config.config_hash()
        != make_run_config(
            "copy", "lstm", preset="smoke", steps=6, eval_every=2, task_options={"max_length": 5}
        ).config_hash()
    )


def test_row_names_the_loop_implementation_that_ran(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_LSTM_KERNEL", "python")
    row = run(config(model="lstm_cifg", steps=2, eval_every=2), tmp_path)
    assert row["status"] == "ok" and row["kernels"] == "lstm_cell=python"
    assert read_runs(tmp_path).iloc[0]["kernels"] == "lstm_cell=python"


@pytest.mark.parametrize("model", ["lstm", "ntm"])
def test_same_seed_same_metrics(tmp_path, model):
    a = run(config(model=model, steps=5, seed=3), tmp_path)
    b = run(config(model=model, steps=5, seed=3), tmp_path)
    c = run(config(model=model, steps=5, seed=4), tmp_path)
    assert a["loss"] == b["loss"] and a["accuracy_by_length"] == b["accuracy_by_length"]
    assert a["config_hash"] == c["config_hash"] and a["loss"] != c["loss"]


def test_nan_loss_ends_as_diverged(tmp_path, extra_entry_points):
    extra_entry_points(MODELS, FakeEntryPoint("nan-model", "tests.fakes:NaNModel"))
    row = run(config(model="nan-model", steps=10), tmp_path)
    assert row["status"] == "diverged" and row["steps"] == 1 and "nan" in row["error"]
    assert read_runs(tmp_path).iloc[0]["status"] == "diverged"


def test_exception_is_stored_as_error(tmp_path, extra_entry_points):
    extra_entry_points(MODELS, FakeEntryPoint("exploding", "tests.fakes:ExplodingModel"))
    ExplodingModel.calls, ExplodingModel.exc = 0, RuntimeError
    row = run(config(model="exploding", steps=10), tmp_path)
    assert row["status"] == "error" and "boom inside the model" in row["error"] and row["steps"] == 3


def test_ctrl_c_stores_the_run_so_far_then_reraises(tmp_path, extra_entry_points):
    extra_entry_points(MODELS, FakeEntryPoint("exploding", "tests.fakes:ExplodingModel"))
    ExplodingModel.calls, ExplodingModel.exc = 0, KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run(config(model="exploding", steps=10), tmp_path)
    stored = read_runs(tmp_path)
    assert list(stored["status"]) == ["interrupted"] and stored.iloc[0]["steps"] == 3


def test_solved_run_stops_early(tmp_path, extra_entry_points):
    extra_entry_points(TASKS, FakeEntryPoint("constant", "tests.fakes:ConstantTask"))
    row = run(config(task="constant", steps=50, eval_every=4), tmp_path)
    assert (
        row["solved"] and row["steps"] == 4 and row["steps_to_solve"] == 4 and row["samples_to_solve"] == 32
    )


def test_usage_errors_store_nothing(tmp_path):
    with pytest.raises(UnknownNameError):
        run(config(model="lstm").model_copy(update={"model": "lstmm"}), tmp_path)
    with pytest.raises(OptionsError, match="num_layer"):
        run(config(model_options={"num_layer": 2}), tmp_path)
    assert read_runs(tmp_path).empty


def test_presets_merge_in_order():
    cfg = build_train_config("paper", TASKS.get("copy"), MODELS.get("ntm"), {"lr": 5e-4})
    assert cfg.optimizer == "rmsprop" and cfg.momentum == 0.9 and cfg.clip == "value" and cfg.clip_value == 10
    assert cfg.lr == 5e-4  # explicit beats every preset
    with pytest.raises(OptionsError, match="batch_size"):
        build_train_config("quick", overrides={"batch_size": 0})


def test_git_sha_only_from_a_seqbench_checkout(tmp_path, monkeypatch):
    import subprocess

    from seqbench import provenance

    provenance.git_sha.cache_clear()
    sha = provenance.git_sha()
    assert sha == "unknown" or len(sha.split("-")[0]) == 40
    # A package file inside some other repository must not borrow that repository's commit.
    other = tmp_path / "other"
    (other / "pkg").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    monkeypatch.setattr(provenance, "__file__", str(other / "pkg" / "provenance.py"))
    provenance.git_sha.cache_clear()
    try:
        assert provenance.git_sha() == "unknown"
    finally:
        provenance.git_sha.cache_clear()


def test_a_run_leaves_the_thread_count_as_it_found_it(tmp_path):
    import torch

    before = torch.get_num_threads()
    row = run(config(steps=2, threads=2 if before == 1 else 1), tmp_path)
    assert row["threads"] != before and torch.get_num_threads() == before


def test_settings_added_later_keep_stored_hashes():
    """`compile` was added after runs were stored: at its default it must not change config_hash (a sweep
    would otherwise rerun everything); switched on, it is a different experiment."""
    from seqbench.config import make_run_config

    plain = make_run_config("copy", "lstm")
    assert plain.config_hash() == "20775219a8f297fd"  # the stored quick copy/lstm runs' hash
    compiled = make_run_config("copy", "lstm", compile=True)
    assert compiled.train.compile and compiled.config_hash() != plain.config_hash()
