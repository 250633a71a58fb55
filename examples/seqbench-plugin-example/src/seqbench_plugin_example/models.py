"""minGRU (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?", arXiv:2410.01201)."""

from __future__ import annotations

import torch
from torch import nn


class MinGRU(nn.Module):
    """h_t = (1 - z_t) h_{t-1} + z_t h~_t with z_t = σ(W_z x_t), h~_t = W_h x_t: no recurrent matrix."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.gate = nn.Linear(input_size, hidden_size)
        self.candidate = nn.Linear(input_size, hidden_size)
        self.state_size = hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        z = torch.sigmoid(self.gate(x))
        cand = self.candidate(x)
        h = x.new_zeros(x.shape[0], cand.shape[-1])
        out = []
        for z_t, c_t in zip(z.unbind(1), cand.unbind(1), strict=True):
            h = h + z_t * (c_t - h)
            out.append(h)
        return torch.stack(out, dim=1)
