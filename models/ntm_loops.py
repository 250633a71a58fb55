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

Issue 18, second pass: the memory is held slot-minor, (B, M, N), so that the similarities, norms, read and
write run over full SIMD vectors of slots (M = 20 left each slot-major row two vectors and a partial one);
the norms and all heads' key products come from one pass over the memory, the reads and the first write
head from another; the controller's two recurrent products are one, [Whh | Wr] [h; r], forward and backward,
with h and r side by side in the output rows [h_t | r_t] (the read-out's input, no concatenation); the
slot norms are saved for the backward instead of recomputed. Under no_grad the loop keeps two steps of
state instead of T + 1 (evaluation memory). Measured after it (H 128, batch 32, T 100, one thread): with
8 slots instead of 128 a training step still costs ~70% as much, so what remains is the controller's
per-step products (about one nn.LSTM's worth) and per-step, per-sequence fixed costs, not the memory loops.

What runs through autograd around the loop: the controller's input projection of every step (one product over
the whole sequence), the learned initial state (expanded to the batch) and the read-out.
"""

from __future__ import annotations

from typing import Any

import torch


class NTMLoop(torch.autograd.Function):
    """hr (T, B, C + R M), rows [h_t | r_t] (the controller's output and the read vectors of each step), from
    the input projections xp (T, B, G) of the controller (G = 4C for the LSTM, C for the feed-forward one)
    and the initial state hr0 = [h0 | r0], M0, w0, c0. Weights: Wc = [Whh | Wr] (G, C + R M) reads the previous
    row (Wr (G, R M) alone for the feed-forward controller, whose h does not feed back), Wp (P, C) and bp (P)
    the head parameters. The memory M0 is slot-minor, (B, M, N) (the C++ loops' layout: full SIMD vectors over
    the slots), and so is its gradient. dims = [N, M, R, W, S, lstm]."""

    @staticmethod
    def forward(ctx, ops: Any, dims: list[int], clip: float, eps: float, xp, Wc, Wp, bp, M0, hr0, w0, c0):
        saved = ops.ntm_forward(xp, Wc, Wp, bp, M0, hr0, w0, c0, dims, clip, eps, True)
        hr = saved[0]  # the rest: cs, gates, ps, mems, ws, stages, norms
        ctx.ops, ctx.dims, ctx.clip, ctx.eps = ops, dims, clip, eps
        ctx.save_for_backward(Wc, Wp, *saved)
        return hr[1:]

    @staticmethod
    def backward(ctx, dhr):
        grads = ctx.ops.ntm_backward(dhr.contiguous(), *ctx.saved_tensors, ctx.dims, ctx.clip, ctx.eps)
        dxp, dWc, dWp, dbp, dM0, dhr0, dw0, dc0 = grads
        return None, None, None, None, dxp, dWc, dWp, dbp, dM0, dhr0, dw0, dc0


def ntm_loop(ops: Any, dims: list[int], clip: float, eps: float, *tensors: torch.Tensor) -> torch.Tensor:
    """Apply the C++ loop; every tensor contiguous, as the loops read raw memory. Where no gradient is taken
    (under `torch.no_grad`, the evaluation) the loop runs without keeping its history for a backward: the
    memory of two steps instead of T + 1, so inference memory does not grow with T beyond the outputs."""
    tensors = tuple(t.contiguous() for t in tensors)
    if torch.is_grad_enabled():
        return NTMLoop.apply(ops, dims, clip, eps, *tensors)
    return ops.ntm_forward(*tensors, dims, clip, eps, False)[0][1:]
