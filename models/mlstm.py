"""mLSTM, the matrix-memory cell of xLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory",
arXiv:2405.04517, §2.3), stabilised as NX-AI/xlstm's `recurrent_step_stabilized_simple` and
`parallel_stabilized_simple` (xlstm/blocks/mlstm/backends.py).

Per head, q_t, k_t = W_k x_t / √d_k, v_t; input and forget pre-activations ĩ_t, f̃_t (scalars per head):

    C_t = f_t C_{t-1} + i_t k_t v_tᵀ,   n_t = f_t n_{t-1} + i_t k_t,   f_t = σ(f̃_t),  i_t = exp(ĩ_t)
    h̃_t = C_tᵀ q_t / max(|n_tᵀ q_t|, 1)
    y_t = W_o (σ(W_og x_t) ⊙ GroupNorm_h(h̃_t))

The exponential input gate overflows, so C, n are kept divided by e^{m_t}, m_t = max(log f_t + m_{t-1}, ĩ_t)
(m_0 = -∞): the output is unchanged, max(|n_tᵀ q_t|, 1) becoming max(|n'_tᵀ q_t|, e^{-m_t}) (+ ε = 1e-6 as in
xlstm). The chunked form keeps (C, n, m) at chunk starts; inside a chunk, with b_t = Σ log f from the chunk's
start, log D_tj = b_t - b_j + ĩ_j and m_t = max(b_t + m_0, max_{j<=t} log D_tj): the same m_t as the
recurrent form, so the two agree exactly (xlstm's parallel form is the one-chunk case with m_0 = -∞).
State: heads x (d_k x d_v + d_k + 1) floats: C, n and m.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.models.backbone import MixerModel
from seqbench.models.linear_recurrence import TwoFormMixer, check_options, merge_heads, split_heads

EPS = 1e-6
NEG = -1e30  # m_0: "minus infinity" that keeps exp() and max() free of inf - inf


def mlstm_recurrent(q, k, v, i_pre, logf, state):
    """One step at a time. q, k: (B, H, T, dk); v: (B, H, T, dv); i_pre, logf: (B, H, T)."""
    C, n, m = state
    outs = []
    for qt, kt, vt, it, ft in zip(*(t.unbind(2) for t in (q, k, v, i_pre, logf)), strict=True):
        m_new = torch.maximum(ft + m, it)  # (B, H)
        fa, ia = (ft + m - m_new).exp(), (it - m_new).exp()
        C = fa[..., None, None] * C + ia[..., None, None] * kt.unsqueeze(-1) * vt.unsqueeze(-2)
        n = fa[..., None] * n + ia[..., None] * kt
        num = torch.einsum("bhk,bhkv->bhv", qt, C)
        den = torch.maximum((qt * n).sum(-1).abs(), (-m_new).exp()) + EPS
        outs.append(num / den[..., None])
        m = m_new
    return torch.stack(outs, 2), (C, n, m)


def mlstm_chunked(q, k, v, i_pre, logf, state, chunk: int):
    """The same, chunk by chunk (module docstring)."""
    T = q.shape[2]
    pad = (-T) % chunk
    if pad:  # padded steps write nothing (ĩ = NEG) and keep everything (log f = 0): m and the state stay put
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        i_pre, logf = F.pad(i_pre, (0, pad), value=NEG), F.pad(logf, (0, pad))
    qc, kc, vc = (t.unflatten(2, (-1, chunk)) for t in (q, k, v))  # (B, H, n, C, d)
    ic, bc = i_pre.unflatten(2, (-1, chunk)), logf.unflatten(2, (-1, chunk)).cumsum(-1)  # (B, H, n, C)
    causal = torch.ones(chunk, chunk, dtype=torch.bool, device=q.device).tril()
    logD = (bc.unsqueeze(-1) - bc.unsqueeze(-2) + ic.unsqueeze(-2)).masked_fill(~causal, NEG)  # (.., C, C)
    intra_max = logD.amax(-1)  # (B, H, n, C)
    qk = qc @ kc.transpose(-1, -2)
    C, n, m = state
    outs = []
    per_chunk = (t.unbind(2) for t in (qc, kc, vc, ic, bc, logD, intra_max, qk))
    for q_c, k_c, v_c, i_c, b, lD, imax, qk_c in zip(
        *per_chunk, strict=True
    ):  # unbind: see linear_recurrence
        m_t = torch.maximum(b + m.unsqueeze(-1), imax)  # (B, H, C)
        inter = (b + m.unsqueeze(-1) - m_t).exp()  # weight of the chunk-start state
        W = qk_c * (lD - m_t.unsqueeze(-1)).exp()  # (B, H, C, C), zero above the diagonal
        num = inter.unsqueeze(-1) * (q_c @ C) + W @ v_c
        qn = inter * (q_c @ n.unsqueeze(-1)).squeeze(-1) + W.sum(-1)
        den = torch.maximum(qn.abs(), (-m_t).exp()) + EPS
        outs.append(num / den.unsqueeze(-1))
        m_new = m_t[..., -1]
        w_in = (b[..., -1:] - b + i_c - m_new.unsqueeze(-1)).exp()  # (B, H, C): each write's weight
        fa = (b[..., -1] + m - m_new).exp()
        C = fa[..., None, None] * C + (k_c * w_in.unsqueeze(-1)).transpose(-1, -2) @ v_c
        n = fa[..., None] * n + (k_c * w_in.unsqueeze(-1)).sum(-2)
        m = m_new
    return torch.stack(outs, 2).flatten(2, 3)[:, :, :T], (C, n, m)


class MLSTMMixer(TwoFormMixer):
    version = 1

    def __init__(
        self, d_model: int, heads: int = 4, expand: int = 1, form: str = "chunked", chunk: int = 32
    ) -> None:
        super().__init__()
        check_options("mlstm", form, chunk, heads, expand)
        self.heads, self.form, self.chunk = heads, form, chunk
        self.dk = self.dv = max(1, expand * d_model // heads)
        self.qkv = nn.Linear(d_model, 3 * heads * self.dk, bias=False)
        self.gates = nn.Linear(d_model, 2 * heads)  # ĩ and f̃ per head
        with torch.no_grad():  # xlstm's initialisation: forget bias linspace(3, 6), input bias ~ N(0, 0.1)
            self.gates.weight.zero_()
            self.gates.bias[:heads].normal_(0, 0.1)
            self.gates.bias[heads:].copy_(torch.linspace(3, 6, heads))
        self.ogate = nn.Linear(d_model, heads * self.dv, bias=False)
        self.norm = nn.GroupNorm(heads, heads * self.dv)
        self.out = nn.Linear(heads * self.dv, d_model, bias=False)

    def initial_state(self, batch, device=None, dtype=None):
        H, dk, dv = self.heads, self.dk, self.dv
        z = dict(device=device, dtype=dtype)
        return (
            torch.zeros(batch, H, dk, dv, **z),
            torch.zeros(batch, H, dk, **z),
            torch.full((batch, H), NEG, **z),
        )

    def _run(self, x, state, form):
        H = self.heads
        q, k, v = (split_heads(t, H) for t in self.qkv(x).chunk(3, dim=-1))  # (B, H, T, d)
        k = k * self.dk**-0.5
        i_pre, f_pre = self.gates(x).transpose(1, 2).chunk(2, dim=1)  # (B, H, T) each
        state = self.initial_state(x.shape[0], x.device, x.dtype) if state is None else state
        if form == "recurrent":
            h, state = mlstm_recurrent(q, k, v, i_pre, F.logsigmoid(f_pre), state)
        else:
            h, state = mlstm_chunked(q, k, v, i_pre, F.logsigmoid(f_pre), state, self.chunk)
        h = merge_heads(h)
        h = self.norm(h.flatten(0, 1)).view_as(h)
        return self.out(torch.sigmoid(self.ogate(x)) * h), state


class MLSTM(MixerModel):
    mixer = MLSTMMixer
    short_conv = 4  # xLSTM's mLSTM block convolves its q/k input, length 4
