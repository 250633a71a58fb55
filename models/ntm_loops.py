"""The NTM's time loop as one autograd Function: forward and hand-written backward in C++
(`csrc/ntm_loops.cpp`, built into the shared `seqbench_recurrent` extension by `cpp_loops`).

`NTM.forward` with `implementation="reference"` (models/ntm.py) is the specification: the same equations step by
step through autograd, and the fallback wherever the C++ loops do not run (no compiler, a GPU). Profiled here (H 128, batch 32, T 100, one
thread): the autograd loop is ~60 small ops per step forward and as many backward over (batch, heads, slots),
overhead-bound at 5-6% of the matrix-product FLOP/s. The C++ loop does the controller's products as ATen calls
and the addressing, read and write of every head as SIMD loops over each sequence's memory, nothing recorded:
a first version with plain scalar loops gave ~2.5x (29x nn.LSTM to 11.5x, on a loaded machine); the rest came from SIMD accumulators for the row dot products
(a scalar reduction is one latency-bound chain), vectorised exp/log for the softmaxes and the sharpening's
power, and the circular shift without a modulo per term. tests/test_ntm_fast.py compares the two
in float64, outputs and every gradient.

What runs through autograd around the loop: the controller's input projection of every step (one product over
the whole sequence), the learned initial state (expanded to the batch) and the read-out.
"""

from __future__ import annotations

from typing import Any

import torch


class NTMLoop(torch.autograd.Function):
    """hs (T, B, C), reads (T, B, R M) from the input projections xp (T, B, G) of the controller (G = 4C for the
    LSTM, C for the feed-forward one) and the initial state. Weights: Wr (G, R M) reads the previous read
    vectors, Whh (4C, C) the controller's previous output (empty for the feed-forward controller), Wp (P, C) and
    bp (P) the head parameters. The memory M0 is slot-minor, (B, M, N) (the C++ loops' layout: full SIMD vectors
    over the slots), and so is its gradient. dims = [N, M, R, W, S, lstm]."""

    @staticmethod
    def forward(
        ctx, ops: Any, dims: list[int], clip: float, eps: float, xp, Wr, Whh, Wp, bp, M0, r0, w0, h0, c0
    ):
        saved = ops.ntm_forward(xp, Wr, Whh, Wp, bp, M0, r0, w0, h0, c0, dims, clip, eps, True)
        hs, cs, gates, rs, ps, mems, ws, stages = saved
        ctx.ops, ctx.dims, ctx.clip, ctx.eps = ops, dims, clip, eps
        ctx.save_for_backward(Wr, Whh, Wp, hs, cs, gates, rs, ps, mems, ws, stages)
        return hs[1:], rs[1:]

    @staticmethod
    def backward(ctx, dhs, drs):
        Wr, Whh, Wp, hs, cs, gates, rs, ps, mems, ws, stages = ctx.saved_tensors
        dhs = torch.zeros_like(hs[1:]) if dhs is None else dhs.contiguous()
        drs = torch.zeros_like(rs[1:]) if drs is None else drs.contiguous()
        grads = ctx.ops.ntm_backward(
            dhs, drs, Wr, Whh, Wp, hs, cs, gates, rs, ps, mems, ws, stages, ctx.dims, ctx.clip, ctx.eps
        )
        dxp, dWr, dWhh, dWp, dbp, dM0, dr0, dw0, dh0, dc0 = grads
        return None, None, None, None, dxp, dWr, dWhh, dWp, dbp, dM0, dr0, dw0, dh0, dc0


def ntm_loop(ops: Any, dims: list[int], clip: float, eps: float, *tensors: torch.Tensor):
    """Apply the C++ loop; every tensor contiguous, as the loops read raw memory. Where no gradient is taken
    (under `torch.no_grad`, the evaluation) the loop runs without keeping its history for a backward: the
    memory of two steps instead of T + 1, so inference memory does not grow with T beyond the outputs."""
    tensors = tuple(t.contiguous() for t in tensors)
    if torch.is_grad_enabled():
        return NTMLoop.apply(ops, dims, clip, eps, *tensors)
    hs, _, _, rs, *_ = ops.ntm_forward(*tensors, dims, clip, eps, False)
    return hs[1:], rs[1:]
