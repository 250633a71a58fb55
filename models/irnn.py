"""IRNN (Le, Jaitly & Hinton 2015, "A Simple Way to Initialize Recurrent Networks of Rectified Linear Units",
arXiv:1504.00941): h_t = ReLU(W x_t + U h_{t-1} + b) with U initialised to the identity and b to zero; input
weights small (N(0, 0.001²) in the paper). Sensitive to the learning rate: the paper's adding results use
lr 1e-2 with SGD, and gradient clipping.

Runs on PyTorch's fused `nn.RNN(nonlinearity="relu")`.
"""

from __future__ import annotations

import torch
from torch import nn

from seqbench.models.common import FusedRecurrentState


class IRNN(FusedRecurrentState, nn.Module):
    fused_attr = "rnn"  # the stateful protocol (initial_state, forward_state, step) on this module

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, input_std: float = 0.001
    ) -> None:
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size, num_layers, nonlinearity="relu", batch_first=True)
        with torch.no_grad():
            for layer in range(num_layers):
                getattr(self.rnn, f"weight_hh_l{layer}").copy_(torch.eye(hidden_size))
                getattr(self.rnn, f"weight_ih_l{layer}").normal_(0.0, input_std)
                getattr(self.rnn, f"bias_ih_l{layer}").zero_()
                getattr(self.rnn, f"bias_hh_l{layer}").zero_()
        self.state_size = hidden_size * num_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        return self.rnn(x)[0]
