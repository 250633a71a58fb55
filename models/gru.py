"""GRU (Cho et al. 2014, "Learning Phrase Representations using RNN Encoder-Decoder", arXiv:1406.1078).

This is PyTorch's fused `nn.GRU`, which applies the reset gate *after* the recurrent matrix product:
n = tanh(W_n x + b_in + r ⊙ (U_n h + b_hn)). Cho et al. wrote r inside the product, tanh(W x + U (r ⊙ h)).
"""

from __future__ import annotations

import torch
from torch import nn

from seqbench.models.common import FusedRecurrentState, RecurrentInit, init_recurrent


class GRU(FusedRecurrentState, nn.Module):
    fused_attr = "gru"  # the stateful protocol (initial_state, forward_state, step) on this module

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        recurrent_init: RecurrentInit = "default",
    ) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, num_layers, batch_first=True)
        for layer in range(num_layers):  # PyTorch's default, or orthogonal / identity blocks
            init_recurrent(getattr(self.gru, f"weight_hh_l{layer}"), hidden_size, recurrent_init)
        self.state_size = hidden_size * num_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        return self.gru(x)[0]
