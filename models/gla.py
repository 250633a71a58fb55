"""Gated linear attention (Yang et al. 2024, "Gated Linear Attention Transformers with Hardware-Efficient
Training", arXiv:2312.06635): linear attention with a data-dependent decay per key channel.

Per head, with q_t = W_q x_t / √d_k, k_t = W_k x_t, v_t = W_v x_t and a low-rank gate (§4.1, eq. 8):

    α_t = σ(W_α² W_α¹ x_t + b_α)^(1/τ), τ = 16        (log α_t = logsigmoid(·) / 16)
    S_t = diag(α_t) S_{t-1} + k_t v_tᵀ        o_t = S_tᵀ q_t
    y_t = W_o (swish(W_r x_t) ⊙ RMSNorm(o_t))

d_k = d/2 and d_v = d as in the paper (expand_k 0.5). log α is clamped at MIN_LOG_DECAY (e^-4 per step) so
the chunked form's factors stay finite (see linear_recurrence.py). fla's issue #547 reported their chunked
kernels disagreeing with `naive_recurrent_gla` (one kernel read another tensor layout); here both forms share
one layout and are tested equal in float64. State: heads x d_k x d_v.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.models.backbone import MixerModel
from seqbench.models.linear_recurrence import (
    MIN_LOG_DECAY,
    TwoFormMixer,
    check_options,
    chunked_or_fused,
    gla_recurrent,
    merge_heads,
    split_heads,
)

GATE_TEMPERATURE = 16  # τ in eq. 8: keeps α near 1 at initialisation


class GLAMixer(TwoFormMixer):
    version = 1

    def __init__(
        self,
        d_model: int,
        heads: int = 4,
        expand: int = 1,
        expand_k: float = 0.5,
        form: str = "chunked",
        chunk: int = 32,
        implementation: str = "fast",
    ) -> None:
        super().__init__()
        check_options("gla", form, chunk, heads, expand, implementation)
        self.heads, self.form, self.chunk = heads, form, chunk
        self.fast = implementation == "fast"
        self.dk = max(1, int(expand * d_model * expand_k) // heads)
        self.dv = max(1, expand * d_model // heads)
        self.q = nn.Linear(d_model, heads * self.dk, bias=False)
        self.k = nn.Linear(d_model, heads * self.dk, bias=False)
        self.v = nn.Linear(d_model, heads * self.dv, bias=False)
        rank = 16
        self.gate = nn.Sequential(nn.Linear(d_model, rank, bias=False), nn.Linear(rank, heads * self.dk))
        self.r = nn.Linear(d_model, heads * self.dv, bias=False)
        self.norm = nn.RMSNorm(self.dv)
        self.out = nn.Linear(heads * self.dv, d_model, bias=False)

    def initial_state(self, batch, device=None, dtype=None):
        return (torch.zeros(batch, self.heads, self.dk, self.dv, device=device, dtype=dtype),)

    def _run(self, x, state, form):
        H = self.heads
        q, k, v = (
            split_heads(self.q(x), H) * self.dk**-0.5,
            split_heads(self.k(x), H),
            split_heads(self.v(x), H),
        )
        g = (F.logsigmoid(split_heads(self.gate(x), H)) / GATE_TEMPERATURE).clamp(min=MIN_LOG_DECAY)
        S = None if state is None else state[0]
        if form == "recurrent":
            o, S = gla_recurrent(q, k, v, g, S)
        else:
            o, S = chunked_or_fused("gla", self.fast, q, k, v, None, None, g, S, self.chunk)
        return self.out(F.silu(self.r(x)) * merge_heads(self.norm(o))), (S,)


class GLA(MixerModel):
    mixer = GLAMixer
    short_conv = 0  # fla's GLA layer has none by default
