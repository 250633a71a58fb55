"""The DNC's fast paths against their specification, the loop over `DNC.step`, in float64: the C++ loop
(`DNC.cpp_loop`, csrc/dnc_loops.cpp, the default on the CPU) and the autograd one it falls back to
(`DNC.fast_loop`, SEQBENCH_LSTM_KERNEL=python or no compiler). Outputs, the final state, the input's
gradient and every parameter's gradient, from the learned start (`forward`) and from a given state with
gradients into it (`forward_state`, the stateful protocol)."""

from __future__ import annotations

import pytest
import torch

import seqbench
from seqbench.models import dnc as dnc_module

LOOPS = ["cpp", "python"]  # DNC.cpp_loop, DNC.fast_loop
CONFIGS = {
    "default": {},
    "three_heads": {"read_heads": 3, "memory_slots": 7, "memory_width": 4},
    "one_head": {"read_heads": 1},
    "tight_clip": {"controller_clip": 0.3},  # many interface entries clamped: their gradients must be zero
    "no_clip": {"controller_clip": 0.0},
}


def _weights(y: torch.Tensor) -> torch.Tensor:
    # a loss that weights every entry differently, so no gradient cancels by symmetry
    return torch.linspace(-1, 2, y.numel(), dtype=y.dtype).view_as(y)


def _model(opts: dict, seed: int = 0):
    torch.manual_seed(seed)
    model = seqbench.load_model("dnc", 3, 6, **{"memory_slots": 9, "memory_width": 5, **opts}).double()
    with torch.no_grad():  # a controller start away from zero
        model.h0.normal_()
        model.c0.normal_()
    return model


def _grads(model, x, fast: bool):
    model.fast = fast
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    y = model(x)
    (y * _weights(y)).sum().backward()
    return y.detach(), x.grad, {n: p.grad.clone() for n, p in model.named_parameters()}


def _path(monkeypatch, use_loops, loops: str) -> list[str]:
    """Run the loop `loops` for the test; returns the list the fast paths append their names to."""
    use_loops(loops)
    ran: list[str] = []
    for method in ("cpp_loop", "fast_loop"):
        original = getattr(dnc_module.DNC, method)

        def spy(self, *args, _original=original, _name=method):
            ran.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(dnc_module.DNC, method, spy)
    return ran


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fast_loop_matches_the_reference_in_float64(name, loops, monkeypatch, use_loops):
    ran = _path(monkeypatch, use_loops, loops)
    model = _model(CONFIGS[name])
    x = torch.randn(4, 8, 3, dtype=torch.float64)
    y_fast, dx_fast, g_fast = _grads(model, x, True)
    y_ref, dx_ref, g_ref = _grads(model, x, False)
    assert ran == [{"cpp": "cpp_loop", "python": "fast_loop"}[loops]]
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dx_fast, dx_ref, rtol=1e-9, atol=1e-11)
    assert g_fast.keys() == g_ref.keys()
    for n in g_ref:
        torch.testing.assert_close(g_fast[n], g_ref[n], rtol=1e-9, atol=1e-11, msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("name", ["default", "three_heads", "tight_clip"])
def test_forward_state_matches_the_reference_with_gradients_into_the_state(name, loops, use_loops):
    """From a state reached by running a few steps (a non-empty memory, links, usage and weightings), with
    a loss on the outputs and on every part of the final state: the same values and gradients (parameters,
    input and every part of the starting state)."""
    model = _model(CONFIGS[name], seed=1)
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    with torch.no_grad():
        model.fast = False
        _, start = model.forward_state(torch.randn(3, 5, 3, dtype=torch.float64), model.initial_state(3))
    use_loops(loops)
    results = []
    for fast in (True, False):
        model.fast = fast
        model.zero_grad(set_to_none=True)
        xs = x.clone().requires_grad_(True)
        state = tuple(s.clone().requires_grad_(True) for s in start)
        y, final = model.forward_state(xs, state)
        loss = (y * _weights(y)).sum() + sum((f * _weights(f)).sum() for f in final)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((y.detach(), [f.detach() for f in final], xs.grad, [s.grad for s in state], grads))
    (y_f, fin_f, dx_f, ds_f, g_f), (y_r, fin_r, dx_r, ds_r, g_r) = results
    torch.testing.assert_close(y_f, y_r, rtol=1e-10, atol=1e-12)
    for a, b in zip(fin_f, fin_r, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dx_f, dx_r, rtol=1e-9, atol=1e-11)
    for i, (a, b) in enumerate(zip(ds_f, ds_r, strict=True)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=lambda m, i=i: f"state {i}: {m}")
    assert g_f.keys() == g_r.keys()
    for n in g_r:
        torch.testing.assert_close(g_f[n], g_r[n], rtol=1e-9, atol=1e-11, msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("loops", LOOPS)
def test_fast_loop_agrees_in_float32(loops, use_loops):
    use_loops(loops)
    torch.manual_seed(2)
    model = seqbench.load_model("dnc", 3, 6, memory_slots=16, memory_width=4)
    x = torch.randn(2, 12, 3)
    y_fast, dx_fast, g_fast = _grads(model, x, True)
    y_ref, dx_ref, g_ref = _grads(model, x, False)
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dx_fast, dx_ref, rtol=1e-3, atol=1e-5)
    for n in g_ref:
        torch.testing.assert_close(g_fast[n], g_ref[n], rtol=1e-3, atol=1e-5)


def test_reference_implementation_runs_step(monkeypatch):
    model = seqbench.load_model("dnc", 3, 6, memory_slots=5, memory_width=2, implementation="reference")
    called = []
    original = model.step
    monkeypatch.setattr(model, "step", lambda x_t, s: called.append(1) or original(x_t, s))
    assert model(torch.randn(2, 3, 3)).shape == (2, 3, 6) and len(called) == 3


@pytest.mark.parametrize("length", [1, 6, 7])  # the C++ loop's two rolling slots: an odd and an even end
def test_evaluation_without_history_gives_the_same_outputs_and_final_state(length, use_loops):
    """Under no_grad the C++ loop keeps two steps of state instead of T + 1: the same outputs and state."""
    use_loops("cpp")
    model = _model(CONFIGS["default"], seed=3)
    x = torch.randn(2, length, 3, dtype=torch.float64)
    start = model.initial_state(2, dtype=torch.float64)
    with torch.no_grad():
        y, final = model.forward_state(x, start)
    y_grad, final_grad = model.forward_state(x, start)  # with autograd: the full history kept
    torch.testing.assert_close(y, y_grad.detach(), rtol=0, atol=0)
    for a, b in zip(final, final_grad, strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)
