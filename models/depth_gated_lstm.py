"""Depth-gated LSTM (Yao, Cohn, Vylomova, Duh & Dyer 2015, "Depth-Gated LSTM", arXiv:1508.03790).

A stack of LSTMs in which each layer above the first has a depth gate d linking its memory cell to the cell
of the layer below at the same step:

    d_t^L = σ(W_xd x_t^L + w_cd ⊙ c_{t-1}^L + w_ld ⊙ c_t^{L-1} + b_d)
    c_t^L = d_t^L ⊙ c_t^{L-1} + f ⊙ c_{t-1}^L + i ⊙ tanh(W_xc x_t^L + W_hc h_{t-1}^L + b_c)

with x_t^L = h_t^{L-1}; the gates i, f, o are those of a plain LSTM (forget bias 1). The first layer is a
plain LSTM. With num_layers = 1 the model is a plain LSTM (on this loop, not the fused kernel); the default
is 2 layers so that there is a depth gate.

Each layer's recurrence is a `torch.autograd.Function` with a hand-written backward, like the shared LSTM
cell, and like it runs its time loops in C++ on the CPU (`csrc/recurrent_loops.cpp`, built on first use; the
Python loops below are the fallback and the specification); `implementation="reference"` runs the plain
autograd loop it is tested against.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models import cpp_loops


def forward_steps(gates, d, c_below, R, w_cd, hs, cs, ss) -> None:
    """One layer's forward loop in Python (the C++ `dg_forward_steps` computes the same in one pass a step).

    (features, batch) layout. gates (T, 4H, B) holds the input projections (blocks i, f, z, o) and is
    overwritten with the activated gates; d (T, H, B) holds the depth gate's pre-activation parts known
    before the loop and is overwritten with the activated gate (empty on the first layer, with c_below and
    w_cd); hs, cs (T + 1, H, B) filled from their given step 0; ss (T, H, B) = tanh(c)."""
    T = gates.shape[0]
    H = R.shape[1]
    gated = d.numel() > 0
    gl, hl, cl, sl = gates.unbind(0), hs.unbind(0), cs.unbind(0), ss.unbind(0)
    if gated:
        dl, belows, w = d.unbind(0), c_below.unbind(0), w_cd.view(H, 1)
    for t in range(T):
        g, c_prev, c = gl[t], cl[t], cl[t + 1]
        g.addmm_(R, hl[t])
        g[: 2 * H].sigmoid_()
        g[3 * H :].sigmoid_()
        g[2 * H : 3 * H].tanh_()
        torch.mul(g[H : 2 * H], c_prev, out=c)
        c.addcmul_(g[:H], g[2 * H : 3 * H])
        if gated:
            dl[t].addcmul_(w, c_prev).sigmoid_()
            c.addcmul_(dl[t], belows[t])
        torch.mul(torch.tanh(c, out=sl[t]), g[3 * H :], out=hl[t + 1])


def backward_steps(dh_out, dc_out, R, w_cd, gates, d, c_below, hs, cs, ss, dA, dd, dbelow, dR) -> None:
    """One layer's backward loop in Python (the C++ `dg_backward_steps` is the same in one pass a step).

    dh_out, dc_out (T, H, B): gradients reaching h (from the output and the layer above's input) and c (from
    the layer above's depth gate). Fills dA (T, 4H, B) with the gates' pre-activation gradients and, on
    gated layers, dd (T, H, B) with the depth gate's and dbelow (T, H, B) with the gradient reaching c_below
    through d ⊙ c_below; accumulates the recurrent weight gradient into dR."""
    T, _, B = gates.shape
    H = R.shape[1]
    gated = d.numel() > 0
    gl, hl, cl, sl, dal = gates.unbind(0), hs.unbind(0), cs.unbind(0), ss.unbind(0), dA.unbind(0)
    dhl, dcl = dh_out.unbind(0), dc_out.unbind(0)
    if gated:
        dl, ddl, dbl, belows, w = (
            d.unbind(0),
            dd.unbind(0),
            dbelow.unbind(0),
            c_below.unbind(0),
            w_cd.view(H, 1),
        )
    Rt = R.t()
    dh = gates.new_empty(H, B)
    dc = gates.new_zeros(H, B)
    for t in range(T - 1, -1, -1):
        g, da, c_prev, s = gl[t], dal[t], cl[t], sl[t]
        i, f, z, o = g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :]
        if t == T - 1:
            dh.copy_(dhl[t])
        else:
            torch.addmm(dhl[t], Rt, dal[t + 1], out=dh)
        torch.mul(dh, s, out=da[3 * H :])  # do
        dh.mul_(o)  # ds
        dh.sub_(dh * s * s)  # through tanh
        dc.add_(dh).add_(dcl[t])
        torch.mul(dc, i, out=da[2 * H : 3 * H])  # dz
        torch.mul(dc, z, out=da[:H])  # di
        torch.mul(dc, c_prev, out=da[H : 2 * H])  # df
        da[2 * H : 3 * H].sub_(da[2 * H : 3 * H] * z * z)  # through tanh
        for rows in (slice(0, 2 * H), slice(3 * H, 4 * H)):  # through the sigmoids
            da[rows].mul_(torch.addcmul(g[rows], g[rows], g[rows], value=-1))
        if gated:
            dt = dl[t]
            torch.mul(dc, belows[t], out=ddl[t]).mul_(torch.addcmul(dt, dt, dt, value=-1))
            torch.mul(dc, dt, out=dbl[t])
        dc.mul_(f)
        if gated:
            dc.addcmul_(ddl[t], w)
        dR.addmm_(da, hl[t].t())


def steps(device: torch.device) -> tuple[Callable[..., None], Callable[..., None]]:
    """(forward loop, backward loop): the C++ ones on the CPU where they build (`cpp_loops`, the same
    extension as the shared LSTM cell's), else the Python ones above."""
    ops = cpp_loops.ops_for("depth_gated_lstm", device)
    return (forward_steps, backward_steps) if ops is None else (ops.dg_forward_steps, ops.dg_backward_steps)


class _DepthGatedRecurrence(torch.autograd.Function):
    """One layer with a hand-written backward, in the (features, batch) layout of the shared LSTM cell.

    In: x (T, B, I); W (nH, I), b (nH) with nH = 4H (blocks i, f, z, o) or 5H (and d) on gated layers;
    R (4H, H); c_below (T, H, B), w_ld, w_cd (H,) on gated layers, else None. Out: h and c, each (T, H, B):
    c feeds the depth gate of the layer above. The input projections of all steps are one batched product
    before the loop, made in the loop's layout."""

    @staticmethod
    def forward(ctx, x, W, b, R, c_below, w_ld, w_cd):
        T, B, _ = x.shape
        H = R.shape[1]
        gated = c_below is not None
        xs = torch.baddbmm(b.unsqueeze(1), W.expand(T, -1, -1), x.transpose(1, 2))  # (T, nH, B)
        gates = xs[:, : 4 * H]  # each step's (4H, B) slice is contiguous, which is all the loops need
        d = xs[:, 4 * H :]
        if gated:
            d.addcmul_(w_ld.view(H, 1), c_below)  # d's parts known before the loop
        hs, cs, ss = x.new_zeros(T + 1, H, B), x.new_zeros(T + 1, H, B), x.new_empty(T, H, B)
        fwd, _ = steps(x.device)
        none = x.new_empty(0)
        fwd(gates, d, c_below if gated else none, R, w_cd if gated else none, hs, cs, ss)
        ctx.gated = gated
        ctx.save_for_backward(x, W, R, w_ld, w_cd, xs, c_below if gated else none, hs, cs, ss)
        return hs[1:], cs[1:]

    @staticmethod
    def backward(ctx, dh_out, dc_out):
        x, W, R, w_ld, w_cd, xs, c_below, hs, cs, ss = ctx.saved_tensors
        gated = ctx.gated
        T, nH, B = xs.shape
        H = R.shape[1]
        d_xs = xs.new_empty(T, nH, B)  # pre-activation gradients: gates, then the depth gate
        dbelow = xs.new_empty(T, H, B) if gated else xs.new_empty(0)
        dR = torch.zeros_like(R)
        _, bwd = steps(xs.device)
        none = xs.new_empty(0)
        bwd(
            dh_out.contiguous(),
            dc_out.contiguous(),
            R,
            w_cd if gated else none,
            xs[:, : 4 * H],
            xs[:, 4 * H :],
            c_below,
            hs,
            cs,
            ss,
            d_xs[:, : 4 * H],
            d_xs[:, 4 * H :],
            dbelow,
            dR,
        )
        dx = torch.matmul(W.t(), d_xs).transpose(1, 2) if ctx.needs_input_grad[0] else None
        dW = torch.tensordot(d_xs, x, dims=([0, 2], [0, 1]))  # one product over steps and batch
        db = d_xs.sum((0, 2))
        if not gated:
            return dx, dW, db, dR, None, None, None
        dd = d_xs[:, 4 * H :]
        dc_below = dbelow.addcmul_(w_ld.view(H, 1), dd)
        dw_ld = (dd * c_below).sum((0, 2))
        dw_cd = (dd * cs[:-1]).sum((0, 2))
        return dx, dW, db, dR, dc_below, dw_ld, dw_cd


class _Layer(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, depth_gate: bool, forget_bias: float) -> None:
        super().__init__()
        H, k = hidden_size, 1 / math.sqrt(hidden_size)
        n = 5 if depth_gate else 4  # blocks i, f, z, o (+ d)
        self.H, self.depth_gate = H, depth_gate
        self.weight_ih = nn.Parameter(torch.empty(n * H, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H).uniform_(-k, k))
        self.bias = nn.Parameter(torch.empty(n * H).uniform_(-k, k))
        with torch.no_grad():
            self.bias[H : 2 * H].fill_(forget_bias)
        if depth_gate:
            self.w_cd = nn.Parameter(torch.empty(H).uniform_(-k, k))  # from this layer's previous cell
            self.w_ld = nn.Parameter(torch.empty(H).uniform_(-k, k))  # from the cell below

    def fast(self, x: torch.Tensor, c_below: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (T, B, I), c_below (T, H, B) or None -> h, c (T, H, B): the hand-written recurrence."""
        if self.depth_gate:
            return _DepthGatedRecurrence.apply(
                x, self.weight_ih, self.bias, self.weight_hh, c_below, self.w_ld, self.w_cd
            )
        return _DepthGatedRecurrence.apply(x, self.weight_ih, self.bias, self.weight_hh, None, None, None)

    def forward(
        self,
        x: torch.Tensor,
        c_below: torch.Tensor | None,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference: the equations step by step through autograd. x (T, B, I), c_below (T, B, H) or
        None -> h (T, B, H), c (T, B, H); from `state` (h, c), each (B, H), or from zeros."""
        H = self.H
        xp = torch.nn.functional.linear(x, self.weight_ih, self.bias)  # (T, B, nH), hoisted
        d_in = None
        if self.depth_gate:
            d_in = xp[..., 4 * H :] + self.w_ld * c_below  # the parts of d known before the loop
            xp = xp[..., : 4 * H]
        h, c = state if state is not None else (x.new_zeros(x.shape[1], H),) * 2
        hs, cs = [], []
        steps = (
            zip(xp.unbind(0), d_in.unbind(0), c_below.unbind(0), strict=True)
            if self.depth_gate
            else ((s, None, None) for s in xp.unbind(0))
        )
        for xp_t, d_t, below_t in steps:
            i, f, z, o = torch.addmm(xp_t, h, self.weight_hh.t()).chunk(4, dim=-1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(z)
            if self.depth_gate:
                c_new = c_new + torch.sigmoid(d_t + self.w_cd * c) * below_t
            c = c_new
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
            cs.append(c)
        return torch.stack(hs), torch.stack(cs)


class DepthGatedLSTM(nn.Module):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 2,
        forget_bias: float = 1.0,
        implementation: Literal["fast", "reference"] = "fast",
    ) -> None:
        super().__init__()
        self.fast = implementation == "fast"
        if num_layers < 1:
            raise OptionsError(f"depth_gated_lstm: num_layers must be >= 1, got {num_layers}.")
        self.layers = nn.ModuleList(
            _Layer(input_size if n == 0 else hidden_size, hidden_size, n > 0, forget_bias)
            for n in range(num_layers)
        )
        self.state_size = 2 * hidden_size * num_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        h, c = x.transpose(0, 1), None
        if self.fast:  # layers pass h and c in the (T, H, B) layout of the loops
            for layer in self.layers:
                h, c = layer.fast(h, c)
                h = h.transpose(1, 2)
            return h.transpose(0, 1)
        for layer in self.layers:
            h, c = layer(h, c)
        return h.transpose(0, 1)

    # The stateful protocol (seqbench.stateful): the state is every layer's (h, c), each (B, H), in layer
    # order. `forward_state` and `step` run the reference equations (the fast loops start from zeros).

    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, ...]:
        """h = c = 0 in every layer."""
        w = self.layers[0].weight_hh
        device, dtype = device or w.device, dtype or w.dtype
        return tuple(
            torch.zeros(batch_size, w.shape[1], device=device, dtype=dtype)
            for _ in range(2 * len(self.layers))
        )

    def forward_state(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """A segment x (B, T, I) from `state`: its outputs (B, T, H) and the state after its last step."""
        h, c, out = x.transpose(0, 1), None, []
        for n, layer in enumerate(self.layers):
            h, c = layer(h, c, (state[2 * n], state[2 * n + 1]))
            out += [h[-1], c[-1]]
        return h.transpose(0, 1), tuple(out)

    def step(
        self, x_t: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One step, x_t (B, I) -> h_t (B, H) of the top layer, and the state after it."""
        h, state = self.forward_state(x_t.unsqueeze(1), state)
        return h[:, 0], state
