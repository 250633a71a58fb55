"""Depth-gated LSTM (Yao, Cohn, Vylomova, Duh & Dyer 2015, "Depth-Gated LSTM", arXiv:1508.03790).

A stack of LSTMs in which each layer above the first has a depth gate d linking its memory cell to the cell
of the layer below at the same step:

    d_t^L = σ(W_xd x_t^L + w_cd ⊙ c_{t-1}^L + w_ld ⊙ c_t^{L-1} + b_d)
    c_t^L = d_t^L ⊙ c_t^{L-1} + f ⊙ c_{t-1}^L + i ⊙ tanh(W_xc x_t^L + W_hc h_{t-1}^L + b_c)

with x_t^L = h_t^{L-1}; the gates i, f, o are those of a plain LSTM (forget bias 1). The first layer is a
plain LSTM. With num_layers = 1 the model is a plain LSTM (on this loop, not the fused kernel); the default
is 2 layers so that there is a depth gate.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seqbench.errors import OptionsError


class _Layer(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, depth_gate: bool, forget_bias: float) -> None:
        super().__init__()
        H, k = hidden_size, 1 / math.sqrt(hidden_size)
        n = 5 if depth_gate else 4  # blocks i, f, z, o (+ d)
        self.H, self.depth_gate = H, depth_gate
        self.weight_ih = nn.Parameter(torch.empty(n * H, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H).uniform_(-k, k))
        self.bias = nn.Parameter(torch.empty(n * H).uniform_(-k, k))
        with torch.no_grad():
            self.bias[H : 2 * H].fill_(forget_bias)
        if depth_gate:
            self.w_cd = nn.Parameter(torch.empty(H).uniform_(-k, k))  # from this layer's previous cell
            self.w_ld = nn.Parameter(torch.empty(H).uniform_(-k, k))  # from the cell below

    def forward(self, x: torch.Tensor, c_below: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """x (T, B, I), c_below (T, B, H) or None -> h (T, B, H), c (T, B, H)."""
        H = self.H
        xp = torch.nn.functional.linear(x, self.weight_ih, self.bias)  # (T, B, nH), hoisted
        if self.depth_gate:
            d_in = xp[..., 4 * H :] + self.w_ld * c_below  # the parts of d known before the loop
            xp = xp[..., : 4 * H]
        h = c = x.new_zeros(x.shape[1], H)
        hs, cs = [], []
        steps = (
            zip(xp.unbind(0), d_in.unbind(0), c_below.unbind(0), strict=True)
            if self.depth_gate
            else ((s, None, None) for s in xp.unbind(0))
        )
        for xp_t, d_t, below_t in steps:
            i, f, z, o = torch.addmm(xp_t, h, self.weight_hh.t()).chunk(4, dim=-1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(z)
            if self.depth_gate:
                c_new = c_new + torch.sigmoid(d_t + self.w_cd * c) * below_t
            c = c_new
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
            cs.append(c)
        return torch.stack(hs), torch.stack(cs)


class DepthGatedLSTM(nn.Module):
    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 2, forget_bias: float = 1.0
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise OptionsError(f"depth_gated_lstm: num_layers must be >= 1, got {num_layers}.")
        self.layers = nn.ModuleList(
            _Layer(input_size if n == 0 else hidden_size, hidden_size, n > 0, forget_bias)
            for n in range(num_layers)
        )
        self.state_size = 2 * hidden_size * num_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        h, c = x.transpose(0, 1), None
        for layer in self.layers:
            h, c = layer(h, c)
        return h.transpose(0, 1)
