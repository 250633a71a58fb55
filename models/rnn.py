"""Elman RNN (Elman 1990, "Finding structure in time"): h_t = tanh(W x_t + U h_{t-1} + b).

Runs on PyTorch's `nn.RNN`, so it matches it exactly (it is it) and runs at its speed.
"""

from __future__ import annotations

import torch
from torch import nn

from seqbench.models.common import FusedRecurrentState, RecurrentInit, init_recurrent


class RNN(FusedRecurrentState, nn.Module):
    fused_attr = "rnn"  # the stateful protocol (initial_state, forward_state, step) on this module

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        recurrent_init: RecurrentInit = "default",
    ) -> None:
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, num_layers, nonlinearity=nonlinearity, batch_first=True)
        for layer in range(num_layers):  # PyTorch's default, or orthogonal / identity blocks
            init_recurrent(getattr(self.rnn, f"weight_hh_l{layer}"), hidden_size, recurrent_init)
        self.state_size = hidden_size * num_layers  # floats carried between steps, per sequence

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        return self.rnn(x)[0]
