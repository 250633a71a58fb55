"""HGRN (Qin, Yang & Zhong 2023, "Hierarchically Gated Recurrent Neural Network for Sequence Modeling",
NeurIPS, arXiv 2311.04823), as a mixer in the block backbone (models/backbone.py).

A gated linear recurrence, element-wise, whose forget gate has a lower bound γ^k that grows with the layer k,
so that lower layers may forget quickly and upper layers keep long-range memory (the paper's §3.2):

    λ_t = γ^k + (1 - γ^k) ⊙ σ(W_f x_t)                  forget gate, in [γ^k, 1]
    i_t = SiLU(W_i x_t) ⊙ (1 - λ_t)                      input, tied to the forget gate
    h_t = λ_t ⊙ h_{t-1} + i_t
    y_t = W_o (RMSNorm(h_t) ⊙ SiLU(W_g x_t))             output gate

Variant: the real-valued form of flash-linear-attention's HGRN layer (fla/layers/hgrn.py: the paper's
complex rotation dropped, output RMSNorm then swish gate), no biases. The lower bound: the paper learns
Γ ∈ R^{layers×d} shared by the stack, γ = cumsum(softmax(Γ)) (fla subtracts the first, so layer 0 has none);
here each layer owns its own βₖ ∈ R^d and γ^0 = 0, γ^k = (k + σ(βₖ)) / (num_layers + 1) for k ≥ 1, which
keeps the bounds increasing with depth without a parameter shared across mixers (the backbone's mixers are
independent modules); the bands are fixed, their position within a band learned.
Parallel form: `diagonal_scan` (a fused multiply-add per step with a hand-written backward, no per-step graph).
Recurrent form: the equations, one step at a time; state h (B, expand·d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models.backbone import Mixer, MixerModel, State
from seqbench.models.common import diagonal_scan


class HGRNMixer(Mixer):
    def __init__(self, d_model: int, expand: int = 1, layer: int = 0, num_layers: int = 1) -> None:
        super().__init__()
        if expand < 1:
            raise OptionsError(f"hgrn: expand must be >= 1, got {expand}.")
        D = self.inner = expand * d_model
        self.proj = nn.Linear(d_model, 3 * D, bias=False)  # forget, input, output gate
        self.norm = nn.RMSNorm(D, eps=1e-5)
        self.out = nn.Linear(D, d_model, bias=False)
        self.layer, self.num_layers = layer, num_layers
        self.beta = nn.Parameter(torch.zeros(D)) if layer > 0 else None

    def lower_bound(self) -> torch.Tensor | float:
        if self.beta is None:
            return 0.0
        return (self.layer + torch.sigmoid(self.beta)) / (self.num_layers + 1)

    def _gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f, i, o = self.proj(x).chunk(3, -1)
        gamma = self.lower_bound()
        lam = gamma + (1 - gamma) * torch.sigmoid(f)
        return lam, F.silu(i) * (1 - lam), o

    def _out(self, h: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        return self.out(self.norm(h) * F.silu(o))

    def initial_state(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> State:
        return (torch.zeros(batch, self.inner, device=device, dtype=dtype),)

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        lam, i, o = self._gates(x_t)
        h = lam * state[0] + i
        return self._out(h, o), (h,)

    def scan(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        lam, i, o = self._gates(x)  # (B, T, D)
        h = diagonal_scan(lam, i, state[0])
        return self._out(h, o), (h[:, -1],)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lam, i, o = self._gates(x)
        return self._out(diagonal_scan(lam, i), o)


class HGRN(MixerModel):
    mixer = HGRNMixer
