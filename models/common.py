"""Helpers the model files share (one place, so that no model file imports another for a helper)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from seqbench.errors import OptionsError

RecurrentInit = Literal["default", "orthogonal", "identity"]


def init_recurrent(weight: torch.Tensor, hidden: int, how: str) -> None:
    """Initialise each (H, H) block of a stacked recurrent matrix: PyTorch's uniform default, orthogonal
    (Saxe et al. 2014) or identity (Le et al. 2015)."""
    if how == "default":
        return
    with torch.no_grad():
        for block in weight.split(hidden, dim=0):
            if how == "orthogonal":
                nn.init.orthogonal_(block)
            elif how == "identity":
                block.copy_(torch.eye(hidden, block.shape[1], dtype=block.dtype))
            else:
                raise OptionsError(f"recurrent_init must be default, orthogonal or identity, got {how!r}.")


def set_forget_bias(module: nn.LSTM | nn.LSTMCell, value: float = 1.0) -> None:
    """Start the forget gate of PyTorch's LSTM (every layer) or LSTMCell at bias `value`. The gate order
    in PyTorch is input, forget, cell, output, and the two biases add up: the input-side one gets the value,
    the recurrent one zero."""
    H = module.hidden_size
    suffixes = [""] if isinstance(module, nn.LSTMCell) else [f"_l{k}" for k in range(module.num_layers)]
    with torch.no_grad():
        for sfx in suffixes:
            getattr(module, f"bias_ih{sfx}")[H : 2 * H].fill_(value)
            getattr(module, f"bias_hh{sfx}")[H : 2 * H].zero_()
