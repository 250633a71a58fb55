from __future__ import annotations

import pytest
from click.testing import CliRunner

from seqbench.cli import main
from seqbench.registry import MODELS
from seqbench.store import read_runs
from tests.fakes import BROKEN_IMPORT, FakeEntryPoint


@pytest.fixture
def cli():
    return CliRunner()


def test_unknown_model_exits_2_with_a_suggestion(cli, tmp_path):
    res = cli.invoke(main, ["run", "--task", "copy", "--model", "lstn", "--results", str(tmp_path)])
    assert res.exit_code == 2
    assert "Unknown model 'lstn'. Did you mean 'lstm'" in res.output
    assert read_runs(tmp_path).empty


def test_unknown_task_exits_2(cli, tmp_path):
    res = cli.invoke(main, ["run", "--task", "cpy", "--model", "lstm", "--results", str(tmp_path)])
    assert res.exit_code == 2 and "Did you mean 'copy'" in res.output


@pytest.mark.parametrize(
    "args,message",
    [
        (["--task-opt", "max_length"], "expects KEY=VALUE"),
        (["--task-opt", "max_lenght=5"], "max_lenght: unknown option"),
        (["--task-opt", "max_length=abc"], "max_length"),
        (["--model-opt", "num_layers=0.5"], "num_layers"),
        (["--batch-size", "0"], "batch_size"),
    ],
)
def test_bad_options_exit_2_and_say_what_is_wrong(cli, tmp_path, args, message):
    res = cli.invoke(
        main,
        ["run", "--task", "copy", "--model", "lstm", "--preset", "smoke", "--results", str(tmp_path), *args],
    )
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_broken_plugin_fails_its_run_with_package_version_and_cause(cli, tmp_path, extra_entry_points):
    extra_entry_points(
        MODELS, FakeEntryPoint("broken", BROKEN_IMPORT, package="broken-plugin", version="0.3")
    )
    res = cli.invoke(main, ["run", "--task", "copy", "--model", "broken", "--results", str(tmp_path)])
    assert res.exit_code == 1
    assert "broken-plugin==0.3" in res.output and "ModuleNotFoundError" in res.output
    ok = cli.invoke(
        main,
        [
            "run",
            "--task",
            "copy",
            "--model",
            "rnn",
            "--preset",
            "smoke",
            "--steps",
            "2",
            "--results",
            str(tmp_path),
        ],
    )
    assert ok.exit_code == 0, ok.output  # a run that did not ask for it is untouched


def test_run_then_leaderboard(cli, tmp_path):
    for seed in (0, 1):
        res = cli.invoke(
            main,
            [
                "run",
                "--task",
                "copy",
                "--model",
                "lstm",
                "--preset",
                "smoke",
                "--seed",
                str(seed),
                "--task-opt",
                "max_length=4",
                "--results",
                str(tmp_path),
            ],
        )
        assert res.exit_code == 0, res.output
        assert "step 20/20" in res.output  # plain progress lines when stdout is not a terminal
        assert "accuracy at 120" in res.output
    assert len(read_runs(tmp_path)) == 2
    board = cli.invoke(main, ["leaderboard", "--task", "copy", "--results", str(tmp_path)])
    assert board.exit_code == 0 and "lstm" in board.output and "0/2" in board.output  # solved by 0 of 2 seeds
    assert board.output.count("lstm") == 1  # two seeds aggregated into one line


def test_ls(cli):
    res = cli.invoke(main, ["ls", "models"])
    assert res.exit_code == 0 and "ntm" in res.output and "seqbench==" in res.output
    assert cli.invoke(main, ["ls", "models", "*ru*"]).output.split()[0] == "gru"
    tasks = [line.split()[0] for line in cli.invoke(main, ["ls", "tasks"]).output.splitlines()]
    assert "copy" in tasks and tasks == sorted(tasks)


def test_sigterm_stores_the_run_as_interrupted(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    cmd = [
        sys.executable,
        "-m",
        "seqbench.cli",
        "run",
        "--task",
        "copy",
        "--model",
        "lstm",
        "--preset",
        "smoke",
        "--steps",
        "100000",
        "--threads",
        "1",
        "--results",
        str(tmp_path),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # wait until training has started
        if "step" in line and "/100000" in line:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, out
    stored = read_runs(tmp_path)
    assert list(stored["status"]) == ["interrupted"] and stored.iloc[0]["steps"] > 0


def test_params_sizes_the_width_and_records_target_and_count(cli, tmp_path):
    args = ["run", "--task", "copy", "--model", "transformer", "--preset", "smoke", "--steps", "2"]
    res = cli.invoke(main, [*args, "--params", "20000", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    row = read_runs(tmp_path).iloc[0]
    assert row["target_params"] == 20000 and abs(row["params"] - 20000) <= 2000
    both = cli.invoke(main, [*args, "--params", "20000", "--hidden-size", "8", "--results", str(tmp_path)])
    assert both.exit_code == 2 and "not both" in both.output
