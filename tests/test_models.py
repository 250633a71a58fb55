"""Every registered model, tested the same way (the contract), then the fused ones against PyTorch."""

from __future__ import annotations

import pytest
import torch

import seqbench
from seqbench.registry import MODELS

IN, H = 5, 8


@pytest.fixture(params=MODELS.names())
def name(request):
    return request.param


def build(name: str, **options):
    torch.manual_seed(0)
    options = {"memory_slots": 6, "memory_width": 4, **options} if name == "ntm" else options
    return seqbench.load_model(name, IN, H, **options)


def test_output_shape_and_gradients(name):
    model = build(name)
    x = torch.randn(3, 7, IN)
    y = model(x)
    assert y.shape == (3, 7, H)
    y.pow(2).mean().backward()
    no_grad = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum())
    ]
    assert not no_grad, f"parameters that no gradient reaches: {no_grad}"


def test_causal(name):
    """Changing inputs after step t never changes outputs up to t."""
    model = build(name).eval()
    x = torch.randn(2, 9, IN)
    t = 4
    x2 = x.clone()
    x2[:, t + 1 :] = torch.randn(2, 9 - t - 1, IN) * 3
    with torch.no_grad():
        y, y2 = model(x), model(x2)
    assert torch.allclose(y[:, : t + 1], y2[:, : t + 1], atol=1e-6)
    assert not torch.allclose(y[:, t + 1 :], y2[:, t + 1 :])


def test_deterministic_init(name):
    a, b = build(name), build(name)
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(p, q), n


def test_state_size_is_reported(name):
    assert build(name).state_size > 0


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
