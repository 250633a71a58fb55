"""RWKV-7 time mixing (Peng et al. 2025, "RWKV-7 'Goose' with Expressive Dynamic State Evolution",
arXiv:2503.14456): the generalised delta rule, with a vector decay and an in-context learning rate per channel.

Every input is lerped with the previous step's (token shift, x'_t = x_t + μ ⊙ (x_{t-1} - x_t), one μ per use):

    r = W_r x'_r   k = W_k x'_k   v = W_v x'_v
    w = exp(-e^{-1/2} σ(w_0 + tanh(x'_w W_w1) W_w2))        decay in (0.545, 1) per channel
    a = σ(a_0 + x'_a W_a1 W_a2)                              in-context learning rate
    κ̂ = normalize_h(k ⊙ ξ)      k̃ = k ⊙ (1 + (a - 1) ⊙ α)
    S_t = S_{t-1} (diag(w_t) - κ̂_tᵀ (a_t ⊙ κ̂_t)) + v_tᵀ k̃_t                (eq. 16, rows as in the paper)
    o_t = S_t r_t + (Σ r_t ⊙ ρ ⊙ k̃_t) v_t                                   (the "bonus" of the current token)
    y_t = W_o (GroupNorm_h(o_t) ⊙ (σ(x'_g W_g1) W_g2))

In linear_recurrence's column convention (fla's `generalized_delta_rule`, `dplr`) that is the DPLR recurrence
with g = log w, a = κ̂, b = -(a ⊙ κ̂), k = k̃; by default (implementation="fast") it runs in linear_recurrence's
fused C++ loop wherever that builds (the same function as the chunked form). Variant: no value residual across layers (v_first) and
LoRA ranks fixed at 16. State: heads x d_k x d_v for S plus d for the token shift's previous input.
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
    dplr_recurrent,
    merge_heads,
    split_heads,
)

RANK = 16
USES = "rwkvag"  # the six lerps: receptance, decay, key, value, learning rate a, output gate


def _lora(d: int, out: int, rank: int = RANK) -> nn.Sequential:
    first, second = nn.Linear(d, rank, bias=False), nn.Linear(rank, out, bias=False)
    nn.init.uniform_(second.weight, -0.01, 0.01)  # starts near its bias (RWKV-7 starts these at zero exactly,
    # which leaves the first matrix without a gradient on the first step)
    return nn.Sequential(first, second)


class RWKV7Mixer(TwoFormMixer):
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
        check_options("rwkv7", form, chunk, heads, expand, implementation)
        d, self.heads, self.form, self.chunk = d_model, heads, form, chunk
        self.fast = implementation == "fast"
        self.dk = self.dv = max(1, expand * d_model // heads)
        inner = heads * self.dk
        self.mu = nn.Parameter(torch.rand(len(USES), d))
        self.r, self.k, self.v = (nn.Linear(d, inner, bias=False) for _ in range(3))
        self.w_lora, self.a_lora = _lora(d, inner), _lora(d, inner)
        self.w0 = nn.Parameter(torch.linspace(-6, -1, inner))  # slow to fast decays across channels
        self.a0 = nn.Parameter(torch.zeros(inner))
        self.g_lora = nn.Sequential(
            nn.Linear(d, RANK, bias=False), nn.Sigmoid(), nn.Linear(RANK, inner, bias=False)
        )
        self.xi = nn.Parameter(torch.full((inner,), 0.85))
        self.alpha = nn.Parameter(torch.ones(inner))
        self.rho = nn.Parameter(torch.randn(heads, self.dk) * 0.1)
        self.norm = nn.GroupNorm(heads, inner)
        self.out = nn.Linear(inner, d, bias=False)

    def initial_state(self, batch, device=None, dtype=None):
        d = self.mu.shape[1]
        z = dict(device=device, dtype=dtype)
        return (torch.zeros(batch, self.heads, self.dk, self.dv, **z), torch.zeros(batch, d, **z))

    def _run(self, x, state, form):
        H = self.heads
        S, last = (None, None) if state is None else state
        prev = torch.cat([x.new_zeros(x[:, :1].shape) if last is None else last.unsqueeze(1), x[:, :-1]], 1)
        xr, xw, xk, xv, xa, xg = (x + (prev - x) * m for m in self.mu.unbind(0))
        r, k, v = (split_heads(f(t), H) for f, t in ((self.r, xr), (self.k, xk), (self.v, xv)))
        log_w = -math.exp(-0.5) * torch.sigmoid(self.w0 + self.w_lora(torch.tanh(xw)))
        a = split_heads(torch.sigmoid(self.a0 + self.a_lora(xa)), H)
        kappa = F.normalize(k * self.xi.view(H, 1, -1), dim=-1)
        k_tilde = k * (1 + (a - 1) * self.alpha.view(H, 1, -1))
        args = (r, k_tilde, v, kappa, -(a * kappa), split_heads(log_w, H), S)
        if form == "recurrent":
            o, S = dplr_recurrent(*args)
        else:
            o, S = chunked_or_fused("rwkv7", self.fast, *args, self.chunk)
        bonus = (r * self.rho.unsqueeze(1) * k_tilde).sum(-1, keepdim=True) * v  # (B, H, T, dv)
        o = merge_heads(o + bonus)
        o = self.norm(o.flatten(0, 1)).view_as(o)
        return self.out(o * self.g_lora(xg)), (S, x[:, -1])


class RWKV7(MixerModel):
    mixer = RWKV7Mixer
    short_conv = 0  # RWKV-7 shifts tokens instead
