"""Gated DeltaNet (Yang et al. 2025, "Gated Delta Networks: Improving Mamba2 with Delta Rule",
arXiv:2412.06464): the delta rule with Mamba-2's scalar decay per head and step.

Per head, q, k, v and β as in DeltaNet (deltanet.py), and

    α_t = exp(-exp(A) · softplus(w_αᵀ x_t + dt_bias))                       (Mamba-2's gate)
    S_t = α_t (I - β_t k_t k_tᵀ) S_{t-1} + β_t k_t v_tᵀ        o_t = S_tᵀ q_t
    y_t = W_o (RMSNorm(o_t) ⊙ swish(W_g x_t))

(fla's `fla/ops/gated_delta_rule/naive.py`). log α is clamped at MIN_LOG_DECAY for the chunked form's
range; negative_eigenvalues=True doubles β (Grazzi et al. 2025). State: heads x d_k x d_v.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.models.backbone import MixerModel
from seqbench.models.deltanet import DeltaNetMixer
from seqbench.models.linear_recurrence import MIN_LOG_DECAY, split_heads


class GatedDeltaNetMixer(DeltaNetMixer):
    version = 1
    kernel = "gated_deltanet"

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
        super().__init__(d_model, heads, expand, negative_eigenvalues, form, chunk, implementation)
        self.alpha = nn.Linear(d_model, heads, bias=False)
        # Mamba-2's initialisation: A in [1, 16], dt = softplus(dt_bias) log-uniform in [1e-3, 1e-1].
        self.A_log = nn.Parameter(torch.empty(heads).uniform_(1, 16).log())
        dt = torch.exp(torch.rand(heads) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)
        self.g = nn.Linear(d_model, heads * self.dv, bias=False)

    def decay(self, x):
        dt = F.softplus(
            split_heads(self.alpha(x), self.heads) + self.dt_bias.view(1, -1, 1, 1)
        )  # (B, H, T, 1)
        return (-self.A_log.exp().view(1, -1, 1, 1) * dt).clamp(min=MIN_LOG_DECAY)

    def gate_output(self, x, o):
        return o * F.silu(self.g(x))


class GatedDeltaNet(MixerModel):
    mixer = GatedDeltaNetMixer
    short_conv = 4  # as the paper's block, length 4
