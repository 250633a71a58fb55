"""Depth-gated LSTM (Yao, Cohn, Vylomova, Duh & Dyer 2015, "Depth-Gated LSTM", arXiv:1508.03790).

A stack of LSTMs in which each layer above the first has a depth gate d linking its memory cell to the cell
of the layer below at the same step:

    d_t^L = σ(W_xd x_t^L + w_cd ⊙ c_{t-1}^L + w_ld ⊙ c_t^{L-1} + b_d)
    c_t^L = d_t^L ⊙ c_t^{L-1} + f ⊙ c_{t-1}^L + i ⊙ tanh(W_xc x_t^L + W_hc h_{t-1}^L + b_c)

with x_t^L = h_t^{L-1}; the gates i, f, o are those of a plain LSTM (forget bias 1). The first layer is a
plain LSTM. With num_layers = 1 the model is a plain LSTM (on this loop, not the fused kernel); the default
is 2 layers so that there is a depth gate.

Each layer's recurrence is a `torch.autograd.Function` with a hand-written backward, like the shared LSTM
cell; `implementation="reference"` runs the plain autograd loop it is tested against.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from seqbench.errors import OptionsError


class _DepthGatedRecurrence(torch.autograd.Function):
    """One layer's recurrence with a hand-written backward, in the (features, batch) layout of the shared
    LSTM cell. xp (T, B, 4H) blocks i, f, z, o; d_in (T, B, H) the depth gate's pre-activation without its
    recurrent peephole, and c_below (T, B, H) the cell below (both None on the first layer); R (4H, H);
    w_cd (H,). Returns h and c, each (T, B, H): c feeds the depth gate of the layer above."""

    @staticmethod
    def forward(ctx, xp, d_in, c_below, R, w_cd):
        T, B, _ = xp.shape
        H = R.shape[1]
        gated = d_in is not None
        xs = xp.transpose(1, 2).contiguous().unbind(0)
        gates = xp.new_empty(T, 4 * H, B)  # activated i, f, z, o
        ds = xp.new_empty(T, H, B) if gated else None  # activated depth gates
        hs, cs, ss = xp.new_zeros(T + 1, H, B), xp.new_zeros(T + 1, H, B), xp.new_empty(T, H, B)
        if gated:
            dins, belows, dl = d_in.transpose(1, 2).unbind(0), c_below.transpose(1, 2).unbind(0), ds.unbind(0)
            w = w_cd.view(H, 1)
        gl, hl, cl, sl = gates.unbind(0), hs.unbind(0), cs.unbind(0), ss.unbind(0)
        for t in range(T):
            g, c_prev, c = gl[t], cl[t], cl[t + 1]
            torch.addmm(xs[t], R, hl[t], out=g)
            g[: 2 * H].sigmoid_()
            g[3 * H :].sigmoid_()
            g[2 * H : 3 * H].tanh_()
            torch.mul(g[H : 2 * H], c_prev, out=c)
            c.addcmul_(g[:H], g[2 * H : 3 * H])
            if gated:
                torch.addcmul(dins[t], w, c_prev, out=dl[t]).sigmoid_()
                c.addcmul_(dl[t], belows[t])
            torch.mul(torch.tanh(c, out=sl[t]), g[3 * H :], out=hl[t + 1])
        ctx.gated = gated
        ctx.save_for_backward(
            R, w_cd, gates, hs, cs, ss, ds if gated else cs.new_empty(0), c_below if gated else cs
        )
        return hs[1:].transpose(1, 2), cs[1:].transpose(1, 2)

    @staticmethod
    def backward(ctx, dh_out, dc_out):
        R, w_cd, gates, hs, cs, ss, ds, c_below = ctx.saved_tensors
        gated = ctx.gated
        T, _, B = gates.shape
        H = R.shape[1]
        dA = gates.new_empty(T, 4 * H, B)
        d_dg = gates.new_empty(T, H, B) if gated else None  # pre-activation gradients of the depth gate
        d_below = gates.new_empty(T, H, B) if gated else None
        dhl = dh_out.transpose(1, 2).contiguous().unbind(0)
        dcl = dc_out.transpose(1, 2).contiguous().unbind(0)
        gl, hl, cl, sl, dal = gates.unbind(0), hs.unbind(0), cs.unbind(0), ss.unbind(0), dA.unbind(0)
        if gated:
            dl, ddl, dbl = ds.unbind(0), d_dg.unbind(0), d_below.unbind(0)
            belows = c_below.transpose(1, 2).unbind(0)
            w = w_cd.view(H, 1)
        Rt = R.t().contiguous()
        dR = torch.zeros_like(R)
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
                d = dl[t]
                torch.mul(dc, belows[t], out=ddl[t]).mul_(torch.addcmul(d, d, d, value=-1))
                torch.mul(dc, d, out=dbl[t])
            dc.mul_(f)
            if gated:
                dc.addcmul_(ddl[t], w)
            dR.addmm_(da, hl[t].t())
        d_xp = dA.transpose(1, 2)
        if not gated:
            return d_xp, None, None, dR, None
        dw_cd = (d_dg * cs[:-1]).sum((0, 2))
        return d_xp, d_dg.transpose(1, 2), d_below.transpose(1, 2), dR, dw_cd


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

    def forward(
        self, x: torch.Tensor, c_below: torch.Tensor | None, fast: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (T, B, I), c_below (T, B, H) or None -> h (T, B, H), c (T, B, H)."""
        H = self.H
        xp = torch.nn.functional.linear(x, self.weight_ih, self.bias)  # (T, B, nH), hoisted
        d_in = None
        if self.depth_gate:
            d_in = xp[..., 4 * H :] + self.w_ld * c_below  # the parts of d known before the loop
            xp = xp[..., : 4 * H]
        if fast:
            w_cd = self.w_cd if self.depth_gate else None
            return _DepthGatedRecurrence.apply(xp, d_in, c_below, self.weight_hh, w_cd)
        h = c = x.new_zeros(x.shape[1], H)
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
        for layer in self.layers:
            h, c = layer(h, c, self.fast)
        return h.transpose(0, 1)
