"""LSTM with forget gate (Hochreiter & Schmidhuber 1997; Gers, Schmidhuber & Cummins 2000), no peepholes.

i, f, o = σ(W x_t + R h_{t-1} + b);  z = tanh(W_z x_t + R_z h_{t-1} + b_z)
c_t = f ⊙ c_{t-1} + i ⊙ z;  h_t = o ⊙ tanh(c_t)

This plain form runs on PyTorch's fused `nn.LSTM` (oneDNN on the CPU, cuDNN on a GPU). The forget-gate bias
starts at 1 (Jozefowicz, Zaremba & Sutskever 2015), so the cell remembers by default early in training.
"""

from __future__ import annotations

import torch
from torch import nn

from seqbench.models.common import FusedRecurrentState, RecurrentInit, init_recurrent, set_forget_bias


class LSTM(FusedRecurrentState, nn.Module):
    fused_attr = "lstm"  # the stateful protocol (initial_state, forward_state, step) on this module

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        forget_bias: float = 1.0,
        recurrent_init: RecurrentInit = "default",
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True)
        for layer in range(num_layers):  # PyTorch's default, or orthogonal / identity blocks
            init_recurrent(getattr(self.lstm, f"weight_hh_l{layer}"), hidden_size, recurrent_init)
        set_forget_bias(self.lstm, forget_bias)
        self.state_size = 2 * hidden_size * num_layers  # h and c

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        return self.lstm(x)[0]
