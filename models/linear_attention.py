"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs: Fast Autoregressive Transformers with
Linear Attention", arXiv:2006.16236), causal, with the paper's feature map φ(x) = elu(x) + 1 (eq. 7).

Per head, with φ applied to q_t = W_q x_t and k_t = W_k x_t (eq. 4 and §3.4, the recurrent form):

    S_t = S_{t-1} + φ(k_t) v_tᵀ        z_t = z_{t-1} + φ(k_t)
    o_t = S_tᵀ φ(q_t) / (z_tᵀ φ(q_t) + ε)

The normaliser z_t is the running sum of the keys over time. fla-org/flash-linear-attention's issue #850
(and PR #594 before it) found their naive reference summing it over the wrong axis (heads, or chunks); here
z rides along as one more value column ([v_t, 1]), so S and z take the same path through both forms and the
float64 equality test covers the division. State: heads x d_k x (d_v + 1) floats, exactly S and z.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.models.backbone import MixerModel
from seqbench.models.linear_recurrence import (
    TwoFormMixer,
    check_options,
    chunked_or_fused,
    gla_recurrent,
    merge_heads,
    split_heads,
)

EPS = 1e-6


class LinearAttentionMixer(TwoFormMixer):
    version = 1

    def __init__(
        self,
        d_model: int,
        heads: int = 4,
        expand: int = 1,
        form: str = "chunked",
        chunk: int = 32,
        implementation: str = "fast",
    ) -> None:
        super().__init__()
        check_options("linear_attention", form, chunk, heads, expand, implementation)
        self.heads, self.form, self.chunk = heads, form, chunk
        self.fast = implementation == "fast"
        self.dk = self.dv = max(1, expand * d_model // heads)
        self.qkv = nn.Linear(d_model, 3 * heads * self.dk, bias=False)
        self.out = nn.Linear(heads * self.dv, d_model, bias=False)

    def initial_state(self, batch, device=None, dtype=None):
        return (torch.zeros(batch, self.heads, self.dk, self.dv + 1, device=device, dtype=dtype),)

    def _run(self, x, state, form):
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))  # (B, H, T, d)
        q, k = F.elu(q) + 1, F.elu(k) + 1
        v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)  # the last column accumulates z_t
        S = None if state is None else state[0]
        if form == "recurrent":
            o, S = gla_recurrent(q, k, v1, None, S)
        else:
            o, S = chunked_or_fused("linear_attention", self.fast, q, k, v1, None, None, None, S, self.chunk)
        o = o[..., :-1] / (o[..., -1:] + EPS)
        return self.out(merge_heads(o)), (S,)


class LinearAttention(MixerModel):
    mixer = LinearAttentionMixer
    short_conv = 0  # no short convolution in the paper
