"""The NTM's C++ loop (models/csrc/ntm_loops.cpp) against its specification, the autograd loop of
`NTM.reference_forward`, in float64: outputs, the input's gradient and every parameter's gradient."""

from __future__ import annotations

import pytest
import torch

import seqbench

CONFIGS = {
    "default": {},
    "heads": {"read_heads": 2, "write_heads": 2, "shift_range": 2},
    "feedforward": {"controller": "feedforward", "read_heads": 2},
    "tight_clip": {"controller_clip": 0.3},  # many parameters clamped: their gradients must be zero
    "no_clip": {"controller_clip": 0.0, "write_heads": 0},
}


def _grads(model, x):
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    y = model(x)
    # a loss that weights every output differently, so no gradient cancels by symmetry
    (y * torch.linspace(-1, 2, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
    return y.detach(), x.grad, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fast_loop_matches_the_reference_in_float64(name, use_loops):
    use_loops("cpp")
    opts = {"memory_slots": 9, "memory_width": 5, **CONFIGS[name]}
    torch.manual_seed(0)
    model = seqbench.load_model("ntm", 3, 6, **opts).double()
    with torch.no_grad():  # a memory and weightings away from their symmetric start
        model.memory_bias.normal_()
        model.weight_logits.normal_()
        model.read_bias.normal_()
    x = torch.randn(4, 7, 3, dtype=torch.float64)
    y_fast, dx_fast, g_fast = _grads(model, x)
    model.fast = False
    y_ref, dx_ref, g_ref = _grads(model, x)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dx_fast, dx_ref, rtol=1e-9, atol=1e-11)
    assert g_fast.keys() == g_ref.keys()
    for n in g_ref:
        torch.testing.assert_close(g_fast[n], g_ref[n], rtol=1e-9, atol=1e-11, msg=lambda m, n=n: f"{n}: {m}")


def test_fast_loop_agrees_in_float32_at_batch_one(use_loops):
    use_loops("cpp")
    torch.manual_seed(1)
    model = seqbench.load_model("ntm", 3, 6, memory_slots=16, memory_width=4)
    x = torch.randn(1, 12, 3)
    y_fast, dx_fast, g_fast = _grads(model, x)
    model.fast = False
    y_ref, dx_ref, g_ref = _grads(model, x)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dx_fast, dx_ref, rtol=1e-3, atol=1e-5)
    for n in g_ref:
        torch.testing.assert_close(g_fast[n], g_ref[n], rtol=1e-3, atol=1e-5)


def test_python_loops_run_the_reference(use_loops, monkeypatch):
    use_loops("python")
    model = seqbench.load_model("ntm", 3, 6, memory_slots=5, memory_width=2)
    called = []
    original = model.reference_forward
    monkeypatch.setattr(model, "reference_forward", lambda x: called.append(1) or original(x))
    assert model(torch.randn(2, 3, 3)).shape == (2, 3, 6) and called


@pytest.mark.parametrize("name", ["default", "heads", "feedforward"])
def test_inference_without_history_matches_the_reference(name, use_loops):
    """Under no_grad the loop keeps two steps of state, not T + 1: the same outputs as the reference."""
    use_loops("cpp")
    torch.manual_seed(2)
    opts = {"memory_slots": 11, "memory_width": 3, **CONFIGS[name]}
    model = seqbench.load_model("ntm", 3, 6, **opts).double()
    with torch.no_grad():
        model.memory_bias.normal_()
        x = torch.randn(3, 9, 3, dtype=torch.float64)
        y_fast = model(x)
        model.fast = False
        y_ref = model(x)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-12)
