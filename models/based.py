"""Based (Arora et al. 2024, "Simple linear attention language models balance the recall-throughput
tradeoff", arXiv:2402.18668): linear attention with a 2nd-order Taylor feature map, plus exact softmax
attention over a short sliding window, as in HazyResearch/zoology's `zoology/mixers/based.py` (the linear
branch) and its sliding-window mixer.

Linear branch, per head, q_t, k_t ∈ R^f (f = feature_dim = 16), v_t ∈ R^{d/h}:

    φ(x) = [1, x / d^{1/4}, vec(x xᵀ) / (√2 √d)]           φ(q)ᵀφ(k) = 1 + qᵀk/√f + (qᵀk)²/(2f) ≈ exp(qᵀk/√f)
    S_t = S_{t-1} + φ(k_t) v_tᵀ,   z_t = z_{t-1} + φ(k_t),   o_t = S_tᵀ φ(q_t) / (z_tᵀ φ(q_t) + ε)

Window branch: softmax(q̄_t K̄ᵀ / √(d/h)) V̄ over the last `window` steps (itself included).

    y_t = W_o [linear_t + window_t]

Variant: the paper interleaves the two as separate layers (with gated convolutions); here one mixer holds
both, summed, so that one model name is the whole Based recipe in this backbone. Forms: the linear branch as
linear_recurrence's GLA with no decay (chunked or recurrent), the window branch in blocks of `window` steps
(chunked) or over a rolling cache (recurrent). State: heads x (1 + f + f²) x (d/h + 1) for S and z, the
window's keys and values (2 x heads x window x d/h) and its score bias (window: which slots hold a step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models.backbone import MixerModel
from seqbench.models.linear_recurrence import (
    TwoFormMixer,
    check_options,
    gla_chunked,
    gla_recurrent,
    merge_heads,
    split_heads,
)

EPS = 1e-6
NEG = -1e30  # the score bias of a window slot before the sequence's start: softmax weight exactly 0


def taylor_features(x: torch.Tensor) -> torch.Tensor:
    """(…, f) -> (…, 1 + f + f²): φ above."""
    f = x.shape[-1]
    x2 = (x.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2) / (2**0.5 * f**0.5)
    return torch.cat([torch.ones_like(x[..., :1]), x / f**0.25, x2], dim=-1)


def window_chunked(q, k, v, cache_k, cache_v, cache_bias, w: int):
    """Softmax attention of each step over the last w keys, in blocks of w queries. q, k, v (B, H, T, d);
    cache_k, cache_v (B, H, w, d) the w keys and values before this call; cache_bias (B, w) added to their
    scores: 0 for a real step, NEG for a slot before the sequence's start."""
    T = q.shape[2]
    pad = (-T) % w
    kf = F.pad(torch.cat([cache_k, k], 2), (0, 0, 0, pad))  # (B, H, w + T + pad, d)
    vf = F.pad(torch.cat([cache_v, v], 2), (0, 0, 0, pad))
    bias = F.pad(torch.cat([cache_bias, cache_bias.new_zeros(q.shape[0], T)], 1), (0, pad))  # (B, w+T+pad)
    qb = F.pad(q, (0, 0, 0, pad)).unflatten(2, (-1, w))  # (B, H, n, w, d)
    kb, vb = (t.unfold(2, 2 * w, w).transpose(-1, -2) for t in (kf, vf))  # (B, H, n, 2w, d)
    bias_b = bias.unfold(1, 2 * w, w)[:, None, :, None, :]  # (B, 1, n, 1, 2w)
    i, p = torch.arange(w, device=q.device).unsqueeze(1), torch.arange(2 * w, device=q.device)
    band = (p > i) & (p <= i + w)  # (w, 2w): key p of the two blocks is among query i's last w steps
    scores = (qb @ kb.transpose(-1, -2)) * q.shape[-1] ** -0.5 + bias_b
    scores = scores.masked_fill(~band, float("-inf"))
    out = (scores.softmax(-1) @ vb).flatten(2, 3)[:, :, :T]
    return out, kf[:, :, T : T + w], vf[:, :, T : T + w], bias[:, T : T + w]


def window_recurrent(q, k, v, cache_k, cache_v, cache_bias, w: int):
    """The same over a rolling cache, one step at a time: the specification."""
    outs = []
    for qt, kt, vt in zip(q.unbind(2), k.unbind(2), v.unbind(2), strict=True):
        cache_k = torch.cat([cache_k[:, :, 1:], kt.unsqueeze(2)], 2)
        cache_v = torch.cat([cache_v[:, :, 1:], vt.unsqueeze(2)], 2)
        cache_bias = torch.cat([cache_bias[:, 1:], cache_bias.new_zeros(q.shape[0], 1)], 1)
        scores = torch.einsum("bhd,bhwd->bhw", qt, cache_k) * q.shape[-1] ** -0.5 + cache_bias.unsqueeze(1)
        outs.append(torch.einsum("bhw,bhwd->bhd", scores.softmax(-1), cache_v))
    return torch.stack(outs, 2), cache_k, cache_v, cache_bias


class BasedMixer(TwoFormMixer):
    version = 1

    def __init__(
        self,
        d_model: int,
        heads: int = 4,
        expand: int = 1,
        feature_dim: int = 16,
        window: int = 64,
        form: str = "chunked",
        chunk: int = 32,
    ) -> None:
        super().__init__()
        check_options("based", form, chunk, heads, expand)
        if feature_dim < 1 or window < 1:
            raise OptionsError(f"based: feature_dim and window must be >= 1, got {feature_dim}, {window}.")
        self.heads, self.f, self.window, self.form, self.chunk = heads, feature_dim, window, form, chunk
        self.dh = max(1, expand * d_model // heads)
        self.qk = nn.Linear(d_model, 2 * heads * feature_dim, bias=False)
        self.v = nn.Linear(d_model, heads * self.dh, bias=False)
        self.qkv_window = nn.Linear(d_model, 3 * heads * self.dh, bias=False)
        self.out = nn.Linear(heads * self.dh, d_model, bias=False)

    def initial_state(self, batch, device=None, dtype=None):
        z = dict(device=device, dtype=dtype)
        D, H, w = 1 + self.f + self.f**2, self.heads, self.window
        cache = torch.zeros(batch, H, w, self.dh, **z)
        return (
            torch.zeros(batch, H, D, self.dh + 1, **z),
            cache,
            cache.clone(),
            torch.full((batch, w), NEG, **z),
        )

    def _run(self, x, state, form):
        H = self.heads
        state = self.initial_state(x.shape[0], x.device, x.dtype) if state is None else state
        S, ck, cv, bias = state
        q, k = (taylor_features(split_heads(t, H)) for t in self.qk(x).chunk(2, dim=-1))  # (B, H, T, D)
        v = split_heads(self.v(x), H)
        v1 = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)  # the last column accumulates z_t
        linear = gla_recurrent if form == "recurrent" else gla_chunked
        o, S = linear(q, k, v1, None, S) if form == "recurrent" else linear(q, k, v1, None, S, self.chunk)
        o = o[..., :-1] / (o[..., -1:] + EPS)
        qw, kw, vw = (split_heads(t, H) for t in self.qkv_window(x).chunk(3, dim=-1))
        window = window_recurrent if form == "recurrent" else window_chunked
        ow, ck, cv, bias = window(qw, kw, vw, ck, cv, bias, self.window)
        return self.out(merge_heads(o + ow)), (S, ck, cv, bias)


class Based(MixerModel):
    mixer = BasedMixer
    short_conv = 0  # Based's gated convolutions are separate layers in the paper
