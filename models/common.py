"""Helpers the model files share (one place, so that no model file imports another for a helper)."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import OptionsError

RecurrentInit = Literal["default", "orthogonal", "identity"]


def init_recurrent(weight: torch.Tensor, hidden: int, how: str) -> None:
    """Initialise each (H, H) block of a stacked recurrent matrix: PyTorch's uniform default, orthogonal
    (Saxe et al. 2014) or identity (Le et al. 2015)."""
    if how == "default":
        return
    with torch.no_grad():
        for block in weight.split(hidden, dim=0):
            if how == "orthogonal":
                nn.init.orthogonal_(block)
            elif how == "identity":
                block.copy_(torch.eye(hidden, block.shape[1], dtype=block.dtype))
            else:
                raise OptionsError(f"recurrent_init must be default, orthogonal or identity, got {how!r}.")


def set_forget_bias(module: nn.LSTM | nn.LSTMCell, value: float = 1.0) -> None:
    """Start the forget gate of PyTorch's LSTM (every layer) or LSTMCell at bias `value`. The gate order
    in PyTorch is input, forget, cell, output, and the two biases add up: the input-side one gets the value,
    the recurrent one zero."""
    H = module.hidden_size
    suffixes = [""] if isinstance(module, nn.LSTMCell) else [f"_l{k}" for k in range(module.num_layers)]
    with torch.no_grad():
        for sfx in suffixes:
            getattr(module, f"bias_ih{sfx}")[H : 2 * H].fill_(value)
            getattr(module, f"bias_hh{sfx}")[H : 2 * H].zero_()


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex type with `dtype`'s precision (states of the complex diagonal recurrences)."""
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def g(v: torch.Tensor) -> torch.Tensor:
    """minGRU/minLSTM's positive candidate activation (Feng et al. 2024): v + ½ for v ≥ 0, σ(v) below."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def log_g(v: torch.Tensor) -> torch.Tensor:
    """log g(v), computed stably: log(v + ½) for v ≥ 0, -softplus(-v) below."""
    return torch.where(v >= 0, (F.relu(v) + 0.5).log(), -F.softplus(-v))


def log_space_scan(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """h_t = a_t ⊙ h_{t-1} + b_t for positive a and b, in log space along dim 1 (Heinsen 2023, "Efficient
    parallelization of a ubiquitous sequential computation"; the scan of Feng et al. 2024):

        h_t = exp(a*_t + logcumsumexp_{s≤t}(log b_s - a*_s)) + exp(a*_t) ⊙ h_0,   a*_t = Σ_{s≤t} log a_s.

    The previous state h_0 enters linearly (not through its logarithm, as in the paper's listing), so it
    may be zero or of any sign and its gradient stays finite. log_a, log_b (B, T, ...), h0 (B, ...) or None.
    Returns h (B, T, ...)."""
    a_star = log_a.cumsum(1)
    h = torch.exp(a_star + (log_b - a_star).logcumsumexp(1))
    return h if h0 is None else h + torch.exp(a_star) * h0.unsqueeze(1)


class _DiagonalScan(torch.autograd.Function):
    """h_t = a_t ⊙ h_{t-1} + b_t, time-major (T, B, ...), one fused multiply-add per step in each direction
    and no autograd graph per step. Backward (real tensors): G_t = dh_t + a_{t+1} ⊙ G_{t+1},
    da_t = G_t ⊙ h_{t-1}, db_t = G_t, dh_0 = a_0 ⊙ G_0. On the CPU both loops run in C++
    (models/csrc/scan_loops.cpp, one vectorised pass over time) where the extension builds; the Python loops
    below are their specification (`SEQBENCH_LSTM_KERNEL=python` runs them)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        from seqbench.models import cpp_loops

        ops = (
            cpp_loops.ops_for("diagonal_scan", a.device)
            if a.dtype in (torch.float32, torch.float64)
            else None
        )
        ctx.ops = ops
        if ops is not None:
            h = ops.diagonal_scan_forward(a, b, h0)
        else:
            h = torch.empty_like(b)
            prev = h0
            for a_t, b_t, h_t in zip(a.unbind(0), b.unbind(0), h.unbind(0), strict=True):
                torch.addcmul(b_t, a_t, prev, out=h_t)
                prev = h_t
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx: Any, dh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a, h, h0 = ctx.saved_tensors
        dh = dh.contiguous()
        if ctx.ops is not None:
            da, G, dh0 = ctx.ops.diagonal_scan_backward(a, h, h0, dh)
            return da, G, dh0
        G = torch.empty_like(dh)
        nxt = torch.zeros_like(h0)
        a_next = [*a.unbind(0)[1:], torch.zeros_like(h0)]
        for t in range(dh.shape[0] - 1, -1, -1):
            nxt = torch.addcmul(dh[t], a_next[t], nxt, out=G[t])
        h_prev = torch.cat([h0.unsqueeze(0), h[:-1]], 0)
        return G * h_prev, G, a[0] * G[0]


def diagonal_scan(
    a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, time_major: bool = False
) -> torch.Tensor:
    """h_t = a_t ⊙ h_{t-1} + b_t along dim 1 of (B, T, ...) real tensors (dim 0 of (T, B, ...) with
    `time_major`, which saves two copies), from h0 (B, ...) or zeros. A scan with a hand-written backward
    (see _DiagonalScan): linear in T in time and memory, no per-step graph."""
    if h0 is None:
        h0 = b.new_zeros(b.shape[1:]) if time_major else b.new_zeros(b.shape[0], *b.shape[2:])
    a, b = torch.broadcast_tensors(a, b)
    if time_major:
        return _DiagonalScan.apply(a.contiguous(), b.contiguous(), h0.contiguous())
    h = _DiagonalScan.apply(a.transpose(0, 1).contiguous(), b.transpose(0, 1).contiguous(), h0.contiguous())
    return h.transpose(0, 1)


State = tuple[torch.Tensor, ...]


class FusedRecurrentState:
    """The optional stateful protocol (see `seqbench.stateful`) for a model that wraps one PyTorch fused
    `nn.RNN`, `nn.LSTM` or `nn.GRU` (batch_first) as the attribute named by `fused_attr`.

    State: `(h,)` for RNN/GRU, `(h, c)` for LSTM, each (B, layers, H), batch first so that a stream's rows
    can be sliced. `forward_state` runs the fused kernel from a given state; `step` writes the same cell
    equations out with `F.linear` (PyTorch's gate order and bias placement), so that `torch.func` can take
    its Jacobians for RTRL and UORO. The two agree in float64 (`seqbench.testing.check_stateful`).
    """

    fused_attr: str = "rnn"

    def _fused(self) -> nn.RNNBase:
        return getattr(self, self.fused_attr)

    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> State:
        m = self._fused()
        w = m.weight_hh_l0
        z = torch.zeros(
            batch_size, m.num_layers, m.hidden_size, device=device or w.device, dtype=dtype or w.dtype
        )
        return (z, z.clone()) if isinstance(m, nn.LSTM) else (z,)

    def forward_state(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        m = self._fused()
        torch_state = tuple(s.transpose(0, 1).contiguous() for s in state)  # (layers, B, H)
        y, out = m(x, torch_state if isinstance(m, nn.LSTM) else torch_state[0])
        out = out if isinstance(m, nn.LSTM) else (out,)
        return y, tuple(s.transpose(0, 1) for s in out)

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:  # (B, I) -> (B, H)
        m = self._fused()
        new_h, new_c = [], []
        inp = x_t
        for k in range(m.num_layers):
            w_ih, w_hh = getattr(m, f"weight_ih_l{k}"), getattr(m, f"weight_hh_l{k}")
            b_ih, b_hh = getattr(m, f"bias_ih_l{k}"), getattr(m, f"bias_hh_l{k}")
            h = state[0][:, k]
            if isinstance(m, nn.LSTM):
                gates = F.linear(inp, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
                i, f, g, o = gates.chunk(4, dim=-1)
                c = torch.sigmoid(f) * state[1][:, k] + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                new_c.append(c)
            elif isinstance(m, nn.GRU):
                xr, xz, xn = F.linear(inp, w_ih, b_ih).chunk(3, dim=-1)
                hr, hz, hn = F.linear(h, w_hh, b_hh).chunk(3, dim=-1)
                r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                h = (1 - z) * torch.tanh(xn + r * hn) + z * h
            else:
                pre = F.linear(inp, w_ih, b_ih) + F.linear(h, w_hh, b_hh)
                h = torch.tanh(pre) if m.nonlinearity == "tanh" else torch.relu(pre)
            new_h.append(h)
            inp = h
        hs = torch.stack(new_h, dim=1)
        return inp, ((hs, torch.stack(new_c, dim=1)) if isinstance(m, nn.LSTM) else (hs,))
