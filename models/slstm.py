"""sLSTM, the scalar-memory cell of xLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory",
arXiv:2405.04517, §2.2), the vanilla cell of NX-AI/xlstm (`xlstm/blocks/slstm/cell.py`,
`slstm_forward_pointwise`), with heads: the recurrent matrices are block-diagonal, one block per head.

    (ĩ, f̃, z̃, õ)_t = W x_t + R h_{t-1} + b
    m_t = max(log σ(f̃_t) + m_{t-1}, ĩ_t)                                 (stabiliser; m_0 = -∞)
    i'_t = exp(ĩ_t - m_t)      f'_t = exp(log σ(f̃_t) + m_{t-1} - m_t)
    c_t = f'_t ⊙ c_{t-1} + i'_t ⊙ tanh(z̃_t)      n_t = f'_t ⊙ n_{t-1} + i'_t
    h_t = σ(õ_t) ⊙ c_t / n_t
    y_t = W_o GroupNorm_h(h_t)

The recurrence is nonlinear (h_{t-1} enters the gates), so there is only a recurrent form, with the input
projection hoisted out of it: `slstm_recurrent`, a loop through autograd, is the specification; by default
(`implementation="fast"`) the loop runs in C++ with a hand-written backward on the CPU (csrc/slstm_loops.cpp:
one product a step with the block-diagonal R made dense, the cell's pointwise work in SIMD loops), as the
LSTM cell's does; the fallback elsewhere (a GPU, no compiler, SEQBENCH_LSTM_KERNEL=python) and
`implementation="reference"` run the Python loop. The two agree in float64, outputs, final state and every
gradient (tests/test_mixers.py). State: 4 x expand x d floats (h, c, n, m).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models import cpp_loops
from seqbench.models.backbone import Mixer, MixerModel

NEG = -1e30  # m_0: "minus infinity" that keeps exp() and max() free of inf - inf


def slstm_recurrent(wx: torch.Tensor, R: torch.Tensor, state: tuple[torch.Tensor, ...]):
    """wx (B, T, 4d) = W x + b; R (heads, d/heads, 4 d/heads); state (h, c, n, m), each (B, d)."""
    h, c, n, m = state
    heads, dh = R.shape[0], R.shape[1]
    outs = []
    for wx_t in wx.unbind(1):
        rh = torch.einsum("bhd,hde->bhe", h.view(-1, heads, dh), R)  # (B, heads, 4 dh)
        raw = wx_t.view(-1, 4, heads, dh) + rh.view(-1, heads, 4, dh).transpose(1, 2)
        i, f, z, o = (t.flatten(1) for t in raw.unbind(1))  # (B, d) each
        logf_m = F.logsigmoid(f) + m
        m_new = torch.maximum(logf_m, i)
        ig, fg = (i - m_new).exp(), (logf_m - m_new).exp()
        c = fg * c + ig * torch.tanh(z)
        n = fg * n + ig
        h = torch.sigmoid(o) * c / n
        m = m_new
        outs.append(h)
    return torch.stack(outs, 1), (h, c, n, m)


def dense_recurrence(R: torch.Tensor) -> torch.Tensor:
    """The block-diagonal R (heads, dh, 4 dh) as one (d, 4d) matrix in the gates' layout (gate, head, unit):
    h R_dense = the per-head products of `slstm_recurrent`, laid out as its gate pre-activations."""
    heads, dh = R.shape[0], R.shape[1]
    return (
        torch.block_diag(*R.unbind(0)).view(heads * dh, heads, 4, dh).transpose(1, 2).reshape(heads * dh, -1)
    )


class _SLSTMLoop(torch.autograd.Function):
    """The C++ loop as one node: hs (T, B, d) and the final c, n, m from wx (T, B, 4d), Rd (d, 4d) and the
    state; its backward takes a gradient into each output and gives one to every input."""

    @staticmethod
    def forward(ctx, ops, wx, Rd, h0, c0, n0, m0):  # type: ignore[override]
        hs, cs, ns, ms, a = ops.slstm_forward(wx, Rd, h0, c0, n0, m0, True)
        ctx.ops = ops
        ctx.save_for_backward(Rd, hs, cs, ns, ms, a)
        return hs[1:], cs[-1].clone(), ns[-1].clone(), ms[-1].clone()

    @staticmethod
    def backward(ctx, dhs, dc, dn, dm):  # type: ignore[override]
        Rd, *saved = ctx.saved_tensors
        grads = (g.contiguous() for g in (dhs, dc, dn, dm))
        dwx, dRd, dh0, dc0, dn0, dm0 = ctx.ops.slstm_backward(*grads, Rd, *saved)
        return None, dwx, dRd, dh0, dc0, dn0, dm0


def slstm_fused(ops, wx: torch.Tensor, R: torch.Tensor, state: tuple[torch.Tensor, ...]):
    """`slstm_recurrent`'s function through the C++ loop: the same arguments and results."""
    args = (
        wx.transpose(0, 1).contiguous(),
        dense_recurrence(R).contiguous(),
        *(s.contiguous() for s in state),
    )
    if torch.is_grad_enabled():
        hs, c, n, m = _SLSTMLoop.apply(ops, *args)
    else:  # no backward to come: two steps of state instead of T + 1
        hs, cs, ns, ms, _ = ops.slstm_forward(*args, False)
        last = wx.shape[1] % 2
        hs, c, n, m = hs[1:], cs[last], ns[last], ms[last]
    return hs.transpose(0, 1), (hs[-1], c, n, m)


class SLSTMMixer(Mixer):
    version = 1

    def __init__(self, d_model: int, heads: int = 4, expand: int = 1, implementation: str = "fast") -> None:
        super().__init__()
        if heads < 1 or expand < 1:
            raise OptionsError(f"slstm: heads and expand must be >= 1, got heads={heads}, expand={expand}.")
        if implementation not in ("fast", "reference"):
            raise OptionsError(
                f"slstm: implementation must be 'fast' or 'reference', got {implementation!r}."
            )
        self.fast = implementation == "fast"
        dh = max(1, expand * d_model // heads)  # any width is accepted, so `--params` can size it freely
        d = heads * dh  # the cells: expand x width when heads divides it
        self.heads, self.d = heads, d
        self.W = nn.Linear(d_model, 4 * d)  # gate order i, f, z, o; each block of d laid out head by head
        self.R = nn.Parameter(torch.randn(heads, dh, 4 * dh) / dh**0.5)
        with torch.no_grad():
            self.W.bias[d : 2 * d].copy_(torch.linspace(3, 6, d))  # forget gates start open, as xlstm's
        self.norm = nn.GroupNorm(heads, d)
        self.out = nn.Linear(d, d_model, bias=False)

    def initial_state(self, batch, device=None, dtype=None):
        z = torch.zeros(batch, self.d, device=device, dtype=dtype)
        return (z, z.clone(), z.clone(), torch.full((batch, self.d), NEG, device=device, dtype=dtype))

    def _output(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(h.flatten(0, 1)).view_as(h))

    def scan(self, x, state):
        state = self.initial_state(x.shape[0], x.device, x.dtype) if state is None else state
        wx = self.W(x)
        ops = None
        if self.fast and x.dtype in (torch.float32, torch.float64):
            ops = cpp_loops.ops_for("slstm", x.device)
        h, state = slstm_recurrent(wx, self.R, state) if ops is None else slstm_fused(ops, wx, self.R, state)
        return self._output(h), state

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        return self.scan(x, None)[0]

    def step(self, x_t, state):
        y, state = self.scan(x_t.unsqueeze(1), state)
        return y.squeeze(1), state


class SLSTM(MixerModel):
    mixer = SLSTMMixer
    short_conv = 4  # xLSTM's sLSTM block convolves its gate input, length 4
