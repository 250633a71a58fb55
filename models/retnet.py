"""Retention (Sun et al. 2023, "Retentive Network: A Successor to Transformer for Large Language Models",
arXiv:2307.08621), multi-scale: a fixed decay γ_h = 1 - 2^(-5-h) per head h (§2.2).

Per head, with q_t = W_Q x_t / √d_k, k_t = W_K x_t, v_t = W_V x_t (eq. 6, the recurrent form):

    S_t = γ_h S_{t-1} + k_t v_tᵀ        o_t = S_tᵀ q_t
    Y   = W_O (swish(W_G X) ⊙ GroupNorm_h(O))

Variant: no xPos rotation of q and k (positions enter through the decay alone, as in fla's
`fla/ops/retention/naive.py` kernel, which takes rotated inputs from its caller). State: heads x d_k x d_v.
"""

from __future__ import annotations

import math

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


class RetNetMixer(TwoFormMixer):
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
        check_options("retnet", form, chunk, heads, expand, implementation)
        self.heads, self.form, self.chunk = heads, form, chunk
        self.fast = implementation == "fast"
        self.dk = self.dv = max(1, expand * d_model // heads)
        self.qkv = nn.Linear(d_model, 3 * heads * self.dk, bias=False)
        self.gate = nn.Linear(d_model, heads * self.dv, bias=False)
        self.norm = nn.GroupNorm(heads, heads * self.dv)
        self.out = nn.Linear(heads * self.dv, d_model, bias=False)
        log_gamma = [math.log(1 - 2.0 ** (-5 - h)) for h in range(heads)]
        self.register_buffer("log_gamma", torch.tensor(log_gamma), persistent=False)

    def initial_state(self, batch, device=None, dtype=None):
        return (torch.zeros(batch, self.heads, self.dk, self.dv, device=device, dtype=dtype),)

    def _run(self, x, state, form):
        q, k, v = (split_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))  # (B, H, T, d)
        q = q * self.dk**-0.5
        g = self.log_gamma.to(q.dtype).view(1, -1, 1, 1).expand(k.shape[0], -1, k.shape[2], 1)  # (B, H, T, 1)
        S = None if state is None else state[0]
        if form == "recurrent":
            o, S = gla_recurrent(q, k, v, g, S)
        else:
            o, S = chunked_or_fused("retnet", self.fast, q, k, v, None, None, g, S, self.chunk)
        o = merge_heads(o)  # (B, T, H·dv)
        o = self.norm(o.flatten(0, 1)).view_as(o)
        return self.out(F.silu(self.gate(x)) * o), (S,)


class RetNet(MixerModel):
    mixer = RetNetMixer
    short_conv = 0  # none in the paper
