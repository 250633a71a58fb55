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

GREFF = [
    "lstm_peephole",
    "lstm_nig",
    "lstm_nfg",
    "lstm_nog",
    "lstm_niaf",
    "lstm_noaf",
    "lstm_cifg",
    "lstm_fgr",
]
STACKED = ["rnn", "irnn", "lstm", "gru", "gru_cho", "lstm_1997", *GREFF]  # take num_layers
MEMORY = {
    "ntm": {"memory_slots": 6, "memory_width": 4},
    "dnc": {"memory_slots": 6, "memory_width": 4},
    "stack_rnn": {"depth": 4, "stack_width": 3},
    "clockwork_rnn": {"modules": 4},
    "depth_gated_lstm": {},
    "grid_lstm": {},
    "conv_rnn": {},
}
STATEFUL = [*STACKED, *MEMORY]
# Recurrent models still without the protocol, and why: memory_network and lstm_attention attend over
# every earlier step (a state that grows with the stream, as the transformer's would).
PLAIN = ["memory_network", "lstm_attention", "transformer", "hyena"]


@pytest.mark.parametrize("name", STACKED)
@pytest.mark.parametrize("layers", [1, 2])
def test_builtins_pass_the_halves_check(name, layers):
    check_stateful(MODELS.get(name), IN, 6, num_layers=layers)


@pytest.mark.parametrize("name", ["gru_cho", "lstm_peephole", "lstm_fgr", "lstm_cifg"])
@pytest.mark.parametrize("implementation", ["fast", "reference"])
def test_own_loops_carry_the_state_in_both_implementations(name, implementation):
    """The hand-written recurrences take a carried state (gru_cho: h0 without gradient; the Greff cell: y0, c0
    with theirs); FGR, and a gradient into gru_cho's h0, run the reference equations."""
    check_stateful(MODELS.get(name), IN, 6, num_layers=2, implementation=implementation)


@pytest.mark.parametrize(
    "options",
    [{}, {"controller": "feedforward"}, {"read_heads": 2, "write_heads": 2}, {"implementation": "reference"}],
)
def test_ntm_carries_memory_weightings_and_controller(options):
    """Under no_grad forward_state is the C++ loop from the given state; with autograd the reference."""
    check_stateful(MODELS.get("ntm"), IN, 8, **MEMORY["ntm"], **options)


@pytest.mark.parametrize("options", [{}, {"read_heads": 1}])
def test_dnc_carries_memory_links_usage_and_controller(options):
    check_stateful(MODELS.get("dnc"), IN, 8, **MEMORY["dnc"], **options)


@pytest.mark.parametrize(
    "options",
    [{}, {"num_layers": 2}, {"periods": (1, 3, 5)}, {"implementation": "reference", "modules": 3}],
)
def test_clockwork_rnn_carries_its_modules_and_its_step_count(options):
    """forward (the prefix recurrence from step 0) against forward_state and step (every module computed and
    the ones not due kept, at the step count carried in the state); periods that do not chain too."""
    check_stateful(MODELS.get("clockwork_rnn"), IN, 8, length=11, **({"modules": 4} | options))


@pytest.mark.parametrize(
    "options", [{}, {"num_layers": 1}, {"num_layers": 3}, {"implementation": "reference"}]
)
def test_depth_gated_lstm_carries_every_layers_cell(options):
    """forward (the fast loops, from zeros) against forward_state and step (the reference equations)."""
    check_stateful(MODELS.get("depth_gated_lstm"), IN, 8, **options)


@pytest.mark.parametrize(
    "options", [{}, {"num_layers": 3}, {"tied": True}, {"depth": "identity"}, {"implementation": "reference"}]
)
def test_grid_lstm_carries_its_time_cells(options):
    """forward (layer by layer, from zeros) against forward_state and step (the grid's natural order)."""
    check_stateful(MODELS.get("grid_lstm"), IN, 8, **options)


@pytest.mark.parametrize(
    "options",
    [{}, {"stride": 1, "kernel": 1}, {"stride": 3, "kernel": 5, "rnn": "gru"}, {"num_layers": 2}],
)
@pytest.mark.parametrize("length", [9, 13])
def test_conv_rnn_carries_its_rnn_its_last_block_and_its_window(options, length):
    """Splits that fall inside a block: the convolutions read across the segment's start from the carried
    inputs, and the steps before the segment's first block end read the carried block output."""
    check_stateful(MODELS.get("conv_rnn"), IN, 8, length=length, **options)
    with pytest.raises(OptionsError, match="step"):  # segments only: RTRL and UORO need a step
        stateful.require(MODELS.get("conv_rnn")(IN, 8, **options), "steps", "--trainer rtrl")


@pytest.mark.parametrize("options", [{}, {"no_op": False, "stacks": 1}, {"implementation": "reference"}])
def test_stack_rnn_carries_its_stacks(options):
    """forward (the C++ loop, from empty stacks) against forward_state and step (the reference equations)."""
    check_stateful(MODELS.get("stack_rnn"), IN, 8, depth=4, stack_width=3, **options)


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
        assert stateful.is_stateful(MODELS.get(name)(IN, 6, **MEMORY.get(name, {}))), name
    for name in PLAIN:
        assert not stateful.is_stateful(MODELS.get(name)(IN, 8, **SMALL.get(name, {}))), name


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


class CutsTheGradient(ForgetsItsState):
    """Uses the state it is given, but detaches it: the values agree, the gradients do not."""

    def forward_state(self, x, state):
        y, h = self.rnn(x, state[0].detach().transpose(0, 1).contiguous())
        return y, (h.transpose(0, 1),)


class StartsItsGradientAtZero(ForgetsItsState):
    """A 'fast path' whose gradient treats the state as zero (what gru_cho's loops do), with a `step`."""

    def step(self, x_t, state):
        y, h = self.rnn(x_t.unsqueeze(1), state[0].transpose(0, 1).contiguous())
        return y[:, 0], (h.transpose(0, 1),)

    def forward_state(self, x, state):
        h0 = state[0].transpose(0, 1).contiguous()
        y0, _ = self.rnn(x, torch.zeros_like(h0))
        y, h = self.rnn(x, h0)
        y = y0 + (y - y0).detach()  # the right values, the gradient of a zero start
        return y, (h.transpose(0, 1),)


@pytest.mark.parametrize("cls", [CutsTheGradient, StartsItsGradientAtZero])
def test_check_stateful_catches_a_wrong_gradient(cls):
    with pytest.raises(AssertionError, match="gradient"):
        check_stateful(cls)


def test_require_names_what_is_missing():
    with pytest.raises(OptionsError, match="initial_state, forward_state"):
        stateful.require(nn.Linear(2, 2), "segments", "--trainer tbptt")
    with pytest.raises(OptionsError, match="step"):
        stateful.require(ForgetsItsState(2, 3), "steps", "--trainer rtrl")
