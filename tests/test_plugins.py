"""A real third-party package: installed into this environment, found through its entry points, run
through the CLI, recorded in the row as its provider; switched off by SEQBENCH_DISABLE_PLUGIN_AUTOLOAD."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from seqbench.store import read_runs

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "seqbench-plugin-example"


def seqbench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seqbench.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def example_plugin():
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    installed = subprocess.run([*pip, "show", "seqbench-plugin-example"], capture_output=True).returncode == 0
    if not installed:
        subprocess.run(
            [*pip, "install", "--no-deps", "--no-build-isolation", "-e", str(EXAMPLE)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    yield
    if not installed:
        subprocess.run([*pip, "uninstall", "-y", "seqbench-plugin-example"], check=True, capture_output=True)


def test_plugin_is_listed_with_its_version(example_plugin):
    res = seqbench("ls", "plugins")
    assert res.returncode == 0, res.stderr
    assert "seqbench-plugin-example==0.1.0: model example-mingru, task example-parity" in res.stdout
    assert "Failed to load" not in res.stderr


def test_plugin_runs_through_the_cli_and_is_recorded(example_plugin, tmp_path):
    res = seqbench(
        "run",
        "--task",
        "example-parity",
        "--model",
        "example-mingru",
        "--preset",
        "smoke",
        "--results",
        str(tmp_path),
    )
    assert res.returncode == 0, res.stdout + res.stderr
    row = read_runs(tmp_path).iloc[0]
    assert row["model_provider"] == "seqbench-plugin-example==0.1.0"
    assert row["task_provider"] == "seqbench-plugin-example==0.1.0" and row["status"] == "ok"


def test_plugin_passes_its_own_contract_tests(example_plugin):
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=EXAMPLE,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_autoload_can_be_switched_off(example_plugin, tmp_path):
    off = {"SEQBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    assert "seqbench-plugin-example" not in seqbench("ls", "plugins", env=off).stdout
    res = seqbench(
        "run",
        "--task",
        "copy",
        "--model",
        "example-mingru",
        "--preset",
        "smoke",
        "--results",
        str(tmp_path),
        env=off,
    )
    assert res.returncode == 2 and "Unknown model 'example-mingru'" in res.stderr
