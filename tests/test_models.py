"""Every registered model, tested the same way (the contract), then the fused ones against PyTorch."""

from __future__ import annotations

import pytest
import torch

import seqbench
from seqbench.registry import MODELS
from seqbench.testing import check_model

IN, H = 5, 8
# Options that fit the contract's 7-step test sequences (a stride-4 conv_rnn's RNN would see one block).
SMALL = {
    "ntm": {"memory_slots": 6, "memory_width": 4},
    "dnc": {"memory_slots": 6, "memory_width": 4},
    "conv_rnn": {"stride": 2, "kernel": 3},
    "memory_network": {"sentence_length": 2},
}


@pytest.mark.parametrize("name", MODELS.names())
def test_contract(name):
    """Every registered model passes the checks a plugin author calls (seqbench.testing.check_model)."""
    check_model(MODELS.get(name), IN, H, **SMALL.get(name, {}))


def build(name: str, **options):
    torch.manual_seed(0)
    return seqbench.load_model(name, IN, H, **options)


def test_lstm_forget_bias_is_one():
    model = seqbench.load_model("lstm", IN, H, num_layers=2)
    for layer in range(2):
        total = getattr(model.lstm, f"bias_ih_l{layer}") + getattr(model.lstm, f"bias_hh_l{layer}")
        assert torch.allclose(total[H : 2 * H], torch.ones(H))


@pytest.mark.parametrize(
    "name,torch_cls", [("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU), ("rnn", torch.nn.RNN)]
)
def test_matches_pytorch_with_copied_weights(name, torch_cls):
    model = build(name, num_layers=2)
    ref = torch_cls(IN, H, num_layers=2, batch_first=True)
    inner = next(m for m in model.modules() if isinstance(m, torch_cls))
    ref.load_state_dict(inner.state_dict())
    x = torch.randn(3, 11, IN)
    assert torch.allclose(model(x), ref(x)[0], atol=1e-6)


def test_state_sizes():
    assert seqbench.load_model("rnn", IN, H, num_layers=2).state_size == 2 * H
    assert seqbench.load_model("lstm", IN, H).state_size == 2 * H
    ntm = seqbench.load_model("ntm", IN, H, memory_slots=10, memory_width=3)
    assert ntm.state_size == 2 * H + 10 * 3 + 3 + 2 * 10  # controller h,c + memory + read + 2 weightings
