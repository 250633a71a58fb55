"""LSTM with attention over its own past (after Bahdanau, Cho & Bengio 2015, "Neural Machine Translation by
Jointly Learning to Align and Translate", and Luong, Pham & Manning 2015 for the dot-product score).

An LSTM (PyTorch's fused kernel, forget bias 1) produces states h_1 … h_T. At step t the cell's state is the
query and its own states up to t are the keys and values:

    additive  e_ts = vᵀ tanh(W_k h_s + W_q h_t)        (Bahdanau)
    dot       e_ts = (W_q h_t)ᵀ h_s / √H                (Luong's "general" score, scaled)
    α_ts = softmax_{s <= t}(e_ts),  c_t = Σ_s α_ts h_s,  y_t = tanh(W_c [c_t; h_t])

Only states up to t are visible, so the model stays causal. `window` > 0 restricts attention to the last
`window` states. Both scores are computed for all steps at once with a mask; the additive score materialises
a (B, T, T, H) tensor, so it costs O(T²H) memory: prefer `dot` (the default) for long sequences.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models.lstm import LSTM


def causal_mask(T: int, window: int, device: torch.device) -> torch.Tensor:
    """(T, T) boolean, True where step t may attend to step s: s <= t, and t - s < window when window > 0."""
    t = torch.arange(T, device=device)
    gap = t.unsqueeze(1) - t.unsqueeze(0)
    visible = gap >= 0
    return visible & (gap < window) if window > 0 else visible


class LSTMAttention(nn.Module):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        score: Literal["dot", "additive"] = "dot",
        window: int = 0,  # 0: every earlier state
    ) -> None:
        super().__init__()
        if score not in ("dot", "additive"):
            raise OptionsError(f"lstm_attention: score must be 'dot' or 'additive', got {score!r}.")
        if window < 0:
            raise OptionsError(f"lstm_attention: window must be >= 0, got {window}.")
        H = hidden_size
        self.score, self.window = score, window
        self.lstm = LSTM(input_size, H, num_layers)
        self.query = nn.Linear(H, H, bias=False)
        if score == "additive":
            self.key = nn.Linear(H, H)
            self.v = nn.Linear(H, 1, bias=False)
        self.combine = nn.Linear(2 * H, H)
        self.state_size = self.lstm.state_size  # plus every earlier state:
        self.state_per_step = H

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        h = self.lstm(x)
        T = h.shape[1]
        q = self.query(h)
        if self.score == "dot":
            e = torch.bmm(q, h.transpose(1, 2)) / math.sqrt(h.shape[-1])  # (B, T, T): query t, key s
        else:
            e = self.v(torch.tanh(q.unsqueeze(2) + self.key(h).unsqueeze(1))).squeeze(-1)
        e = e.masked_fill(~causal_mask(T, self.window, x.device), float("-inf"))
        context = torch.bmm(torch.softmax(e, dim=-1), h)
        return torch.tanh(self.combine(torch.cat([context, h], dim=-1)))
