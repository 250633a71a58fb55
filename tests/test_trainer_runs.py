"""Trainers and streams inside runs: the config (hash, completeness), the row, the CLI's exit 2."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from seqbench.cli import main
from seqbench.config import make_run_config
from seqbench.runner import run
from seqbench.store import read_runs


def test_bptt_on_episodes_keeps_the_stored_hashes():
    """The trainer settings were added after runs were stored: at their defaults the hash is unchanged
    (the two values below were computed with the configuration code before this change)."""
    assert make_run_config("copy", "lstm").config_hash() == "20775219a8f297fd"
    plain = make_run_config("copy", "lstm", preset="quick")
    assert make_run_config("copy", "lstm", trainer="bptt", trainer_options={}, stream=0) == plain


def test_trainer_options_are_complete_so_one_configuration_has_one_hash():
    short = make_run_config("copy_memory", "lstm", trainer="tbptt", trainer_options={"k1": 5})
    full = make_run_config("copy_memory", "lstm", trainer="tbptt", trainer_options={"k1": "5", "k2": 10})
    assert short.train.trainer_options == {"k1": 5, "k2": 10}
    assert short.config_hash() == full.config_hash()
    assert short.config_hash() != make_run_config("copy_memory", "lstm").config_hash()
    other = make_run_config("copy_memory", "lstm", trainer="tbptt", trainer_options={"k1": 5, "k2": 20})
    assert other.config_hash() != short.config_hash()


def test_a_tbptt_stream_run_records_its_trainer(tmp_path):
    cfg = make_run_config(
        "copy_memory",
        "gru",
        preset="smoke",
        task_options={"T": 4, "copy_length": 2},
        steps=3,
        trainer="tbptt",
        trainer_options={"k1": 4, "k2": 6},
        stream=2,
        hidden_size=8,
        threads=1,
    )
    row = run(cfg, tmp_path)
    assert row["status"] == "ok", row["error"]
    stored = read_runs(tmp_path).iloc[0]
    assert stored["trainer"] == "tbptt" and json.loads(stored["trainer_options"]) == {"k1": 4, "k2": 6}
    assert stored["stream_episodes"] == 2
    assert stored["updates"] == 3 * 4  # 3 chunks of 2 episodes x 8 steps, one update every 4 steps
    assert "accuracy_last_episode" in json.loads(stored["metrics"])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "memory_network", "--trainer", "tbptt"], "lacks initial_state, forward_state"),
        (["--model", "memory_network", "--stream", "2"], "on a stream"),
        (["--model", "lstm", "--trainer", "rtrl", "--hidden-size", "256"], "FLOPs per time step"),
        (
            ["--model", "lstm", "--trainer", "tbptt", "--trainer-opt", "k1=4", "--trainer-opt", "k2=2"],
            "k1 <= k2",
        ),
        (["--model", "lstm", "--trainer", "rtlr"], "Unknown trainer 'rtlr'"),
    ],
)
def test_what_a_trainer_cannot_do_exits_2_storing_nothing(tmp_path, args, message):
    res = CliRunner().invoke(
        main, ["run", "--task", "copy_memory", "--preset", "smoke", "--results", str(tmp_path), *args]
    )
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert read_runs(tmp_path).empty
