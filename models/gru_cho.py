"""GRU as Cho et al. wrote it (Cho et al. 2014, arXiv:1406.1078, eq. 5-8): the reset gate acts on the
previous state *before* the recurrent product.

    r = σ(W_r x + U_r h_{t-1} + b_r),  u = σ(W_u x + U_u h_{t-1} + b_u)
    n = tanh(W_n x + U_n (r ⊙ h_{t-1}) + b_n)
    h_t = u ⊙ h_{t-1} + (1 - u) ⊙ n

PyTorch's `nn.GRU` (registered as `gru`) computes n = tanh(W_n x + b_in + r ⊙ (U_n h_{t-1} + b_hn)) instead,
which lets all three recurrent products happen in one matrix multiply; here U_n must wait for r, so a step
costs two products. Parameters use nn.GRU's layout (gate order r, u(z), n), so weights copy across and the
two differ only where r sits. Input projections are hoisted out of the time loop.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _Layer(nn.Module):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        k, H = 1 / math.sqrt(hidden_size), hidden_size
        self.H = H
        self.weight_ih = nn.Parameter(torch.empty(3 * H, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(3 * H, H).uniform_(-k, k))
        self.bias_ih = nn.Parameter(torch.empty(3 * H).uniform_(-k, k))
        self.bias_hh = nn.Parameter(torch.empty(3 * H).uniform_(-k, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (T, B, I) -> (T, B, H)
        H = self.H
        xp = torch.nn.functional.linear(x, self.weight_ih, self.bias_ih)  # (T, B, 3H)
        U_ru, U_n = self.weight_hh[: 2 * H], self.weight_hh[2 * H :]
        b_ru, b_n = self.bias_hh[: 2 * H], self.bias_hh[2 * H :]
        h = x.new_zeros(x.shape[1], H)
        out = []
        for xp_t in xp.unbind(0):  # unbind, not xp[t]: indexing makes backward quadratic in T
            x_ru, x_n = xp_t[:, : 2 * H], xp_t[:, 2 * H :]
            r, u = torch.sigmoid(torch.addmm(x_ru + b_ru, h, U_ru.t())).chunk(2, dim=-1)
            n = torch.tanh(torch.addmm(x_n + b_n, r * h, U_n.t()))
            h = n + u * (h - n)  # u ⊙ h + (1 - u) ⊙ n
            out.append(h)
        return torch.stack(out)


class GRUCho(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            _Layer(input_size if n == 0 else hidden_size, hidden_size) for n in range(num_layers)
        )
        self.state_size = hidden_size * num_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        h = x.transpose(0, 1)
        for layer in self.layers:
            h = layer(h)
        return h.transpose(0, 1)
