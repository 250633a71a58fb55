"""The stateful protocol: every built-in that has it passes check_stateful; the rest are named plainly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqbench import stateful
from seqbench.errors import OptionsError
from seqbench.registry import MODELS
from seqbench.testing import check_stateful
from tests.test_models import IN, SMALL

STATEFUL = ["rnn", "irnn", "lstm", "gru"]


@pytest.mark.parametrize("name", STATEFUL)
@pytest.mark.parametrize("layers", [1, 2])
def test_builtins_pass_the_halves_check(name, layers):
    check_stateful(MODELS.get(name), IN, 6, num_layers=layers)


@pytest.mark.parametrize("name", MODELS.names())
def test_every_model_is_stateful_or_plain(name):
    """A model either passes the protocol's check or lacks it entirely (never half of it, silently)."""
    model = MODELS.get(name)(IN, 8, **SMALL.get(name, {}))
    if stateful.is_stateful(model):
        check_stateful(MODELS.get(name), IN, 8, **SMALL.get(name, {}))
    else:
        with pytest.raises(OptionsError, match="lacks"):
            stateful.require(model, "segments", "--trainer tbptt")


def test_builtins_listed_here_are_stateful():
    for name in STATEFUL:
        assert stateful.is_stateful(MODELS.get(name)(IN, 6)), name


class ForgetsItsState(nn.Module):
    """Claims the protocol but restarts from zero on every segment: check_stateful must catch it."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)

    def forward(self, x):
        return self.rnn(x)[0]

    def initial_state(self, batch_size, device=None, dtype=None):
        return (torch.zeros(batch_size, 1, self.rnn.hidden_size, device=device, dtype=dtype),)

    def forward_state(self, x, state):
        y, h = self.rnn(x)
        return y, (h.transpose(0, 1),)


def test_check_stateful_catches_a_dropped_state():
    with pytest.raises(AssertionError, match="two halves"):
        check_stateful(ForgetsItsState)


def test_require_names_what_is_missing():
    with pytest.raises(OptionsError, match="initial_state, forward_state"):
        stateful.require(nn.Linear(2, 2), "segments", "--trainer tbptt")
    with pytest.raises(OptionsError, match="step"):
        stateful.require(ForgetsItsState(2, 3), "steps", "--trainer rtrl")
