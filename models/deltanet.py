"""DeltaNet (Schlag et al. 2021, "Linear Transformers Are Secretly Fast Weight Programmers", arXiv:2102.11174),
with the chunked parallel form of Yang et al. 2024 ("Parallelizing Linear Transformers with the Delta Rule
over Sequence Length", arXiv:2406.06484).

Per head, q_t and k_t are SiLU then L2-normalised, q scaled by 1/√d_k, v_t = SiLU(W_v x_t), β_t = σ(w_βᵀ x_t):

    S_t = (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ        o_t = S_tᵀ q_t
    y_t = W_o RMSNorm(o_t)

that is S_t = S_{t-1} + β_t k_t (v_t - S_{t-1}ᵀ k_t)ᵀ: the value stored under k_t moves a fraction β_t towards
v_t (fla's `fla/ops/delta_rule/naive.py`). With negative_eigenvalues=True, β_t = 2σ(·) ∈ (0, 2), so the
transition I - β k kᵀ has an eigenvalue in (-1, 1) along k_t (Grazzi et al. 2025, "Unlocking State-Tracking
in Linear RNNs Through Negative Eigenvalues", arXiv:2411.12537). Both forms are linear_recurrence's DPLR with
a = k, b = -β k, k -> β k; the chunked one is the WY/UT form, and by default (implementation="fast") the
recurrence runs in linear_recurrence's fused C++ loop instead wherever that builds (the same function). State: heads x d_k x d_v.
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
    dplr_recurrent,
    merge_heads,
    split_heads,
)


class DeltaNetMixer(TwoFormMixer):
    version = 1
    gated = False
    kernel = "deltanet"  # the name in the row's `kernels` column

    def __init__(
        self,
        d_model: int,
        heads: int = 4,
        expand: int = 1,
        negative_eigenvalues: bool = False,
        form: str = "chunked",
        chunk: int = 32,
        implementation: str = "fast",
    ) -> None:
        super().__init__()
        check_options(type(self).__name__, form, chunk, heads, expand, implementation)
        self.heads, self.form, self.chunk = heads, form, chunk
        self.fast = implementation == "fast"
        self.negative_eigenvalues = negative_eigenvalues
        self.dk = self.dv = max(1, expand * d_model // heads)
        self.qkv = nn.Linear(d_model, 3 * heads * self.dk, bias=False)
        self.beta = nn.Linear(d_model, heads)
        self.norm = nn.RMSNorm(self.dv)
        self.out = nn.Linear(heads * self.dv, d_model, bias=False)

    def initial_state(self, batch, device=None, dtype=None):
        return (torch.zeros(batch, self.heads, self.dk, self.dv, device=device, dtype=dtype),)

    def decay(self, x: torch.Tensor) -> torch.Tensor | None:
        """log α_t per head, (B, H, T, 1), or None for no decay (plain DeltaNet)."""
        return None

    def gate_output(self, x: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        return o

    def _run(self, x, state, form):
        H = self.heads
        q, k, v = (split_heads(F.silu(t), H) for t in self.qkv(x).chunk(3, dim=-1))  # (B, H, T, d)
        q, k = F.normalize(q, dim=-1) * self.dk**-0.5, F.normalize(k, dim=-1)
        beta = torch.sigmoid(split_heads(self.beta(x), H))  # (B, H, T, 1)
        if self.negative_eigenvalues:
            beta = 2 * beta
        log_alpha = self.decay(x)
        b = -beta * k if log_alpha is None else -(log_alpha.exp() * beta) * k
        g = log_alpha  # (B, H, T, 1): one decay per head, broadcast over d_k by the kernels
        S = None if state is None else state[0]
        if form == "recurrent":
            o, S = dplr_recurrent(q, beta * k, v, k, b, g, S)
        else:
            o, S = chunked_or_fused(self.kernel, self.fast, q, beta * k, v, k, b, g, S, self.chunk)
        return self.out(self.gate_output(x, merge_heads(self.norm(o)))), (S,)


class DeltaNet(MixerModel):
    mixer = DeltaNetMixer
    short_conv = 4  # fla's DeltaNet layer has one, length 4
