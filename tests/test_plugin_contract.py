"""Issue 20, rows 16-18: a plugin that breaks the model contract hears exactly how, from check_model and
from the runner alike, whatever Python's flags."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from seqbench.cli import main
from seqbench.errors import ContractError
from seqbench.registry import MODELS
from seqbench.store import read_runs
from seqbench.testing import check_model
from tests.fakes import FakeEntryPoint


class OwnNames(nn.Module):
    """Row 16: the constructor names its sizes its own way."""

    def __init__(self, n_in: int, n_hidden: int) -> None:
        super().__init__()
        self.rnn = nn.RNN(n_in, n_hidden, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class ReturnsState(nn.Module):
    """Row 17: forward returns (output, state), the usual RNN habit."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.rnn(x)


def test_check_model_builds_as_the_runner_does_and_names_the_signature():
    with pytest.raises(ContractError, match=r"must be \(input_size, hidden_size, \*\*options\)"):
        check_model(OwnNames)


def test_a_run_of_a_model_with_its_own_constructor_names_fails_before_storing(tmp_path, extra_entry_points):
    extra_entry_points(MODELS, FakeEntryPoint("own-names", "tests.test_plugin_contract:OwnNames"))
    res = CliRunner().invoke(
        main,
        ["run", "--task", "copy", "--model", "own-names", "--preset", "smoke", "--results", str(tmp_path)],
    )
    assert res.exit_code == 1, res.output
    assert "(input_size, hidden_size, **options)" in res.output and "Traceback" not in res.output
    assert read_runs(tmp_path).empty


def test_forward_returning_a_tuple_is_named_in_check_model_and_in_the_run(tmp_path, extra_entry_points):
    want = (
        r"forward must return one tensor \(batch, time, hidden_size\); got a tuple .* return only the output"
    )
    with pytest.raises(ContractError, match=want):
        check_model(ReturnsState)
    extra_entry_points(MODELS, FakeEntryPoint("returns-state", "tests.test_plugin_contract:ReturnsState"))
    args = ["run", "--task", "copy", "--model", "returns-state", "--preset", "smoke", "--steps", "2"]
    res = CliRunner().invoke(main, [*args, "--results", str(tmp_path)])
    assert res.exit_code == 1
    runs = read_runs(tmp_path)
    assert list(runs["status"]) == ["error"]
    assert "got a tuple of 2 — return only the output" in runs["error"].iloc[0]
    assert "'tuple' object has no attribute" not in runs["error"].iloc[0]


LOOKS_AHEAD = """
import torch
from torch import nn
from seqbench.errors import ContractError
from seqbench.testing import check_model

class LooksAhead(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.lin = nn.Linear(input_size, hidden_size)
    def forward(self, x):
        return self.lin(x.flip(1))

try:
    check_model(LooksAhead)
except ContractError as exc:
    print("caught:", exc)
else:
    print("passed silently")
"""


def test_check_model_still_checks_under_python_O():
    out = subprocess.run(
        [sys.executable, "-O", "-c", LOOKS_AHEAD], capture_output=True, text=True, timeout=120, check=True
    )
    assert "caught: LooksAhead looks ahead in time" in out.stdout, out.stdout + out.stderr
