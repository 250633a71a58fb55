"""The stack RNN's C++ loop (models/csrc/stack_loops.cpp) against its specification, the autograd loop of
`StackRNN.reference_forward`, in float64: outputs, the input's gradient and every parameter's gradient."""

from __future__ import annotations

import pytest
import torch

import seqbench

CONFIGS = {
    "default": {},
    "no_op_off": {"no_op": False, "stacks": 1, "stack_width": 1},
    "read_deep": {"read_top": 4, "depth": 4, "stacks": 3},
}


def _grads(model, x):
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    y = model(x)
    (y * torch.linspace(-1, 2, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
    return y.detach(), x.grad, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_loop_matches_the_reference(name, dtype, use_loops):
    use_loops("cpp")
    torch.manual_seed(0)
    model = seqbench.load_model("stack_rnn", 3, 6, **{"depth": 5, "stack_width": 2, **CONFIGS[name]}).to(
        dtype
    )
    x = torch.randn(4 if dtype == torch.float64 else 1, 9, 3, dtype=dtype)
    fast = _grads(model, x)
    model.fast = False
    ref = _grads(model, x)
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-6}
    torch.testing.assert_close(fast[0], ref[0], **tol)
    torch.testing.assert_close(fast[1], ref[1], **tol)
    assert fast[2].keys() == ref[2].keys()
    for n in ref[2]:
        torch.testing.assert_close(fast[2][n], ref[2][n], **tol, msg=lambda m, n=n: f"{n}: {m}")
