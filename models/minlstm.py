"""minLSTM (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?", arXiv 2410.01201),
as a mixer in the block backbone (models/backbone.py).

The LSTM with gates read from the input only, no output gate and no cell/hidden split, and its forget and
input gates normalised so the state stays time-independent in scale (the paper's "length-independence
scaling", its §3.2.3):

    f_t = σ(W_f x_t),  i_t = σ(W_i x_t),  h̃_t = g(W_h x_t)     g as in minGRU: v + ½ (v ≥ 0), σ(v) (v < 0)
    f'_t = f_t / (f_t + i_t),  i'_t = i_t / (f_t + i_t)
    h_t = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t
    y_t = W_o h_t                            (W_o only when expand > 1)

Parallel form: the linear-space diagonal scan (`diagonal_scan`, as minGRU) of h_t = f'_t ⊙ h_{t-1} +
i'_t ⊙ h̃_t, exact since f' ∈ (0, 1) and the recurrence is the scan itself; f' = σ(-δ), i' = σ(δ) with
δ = softplus(-k_f) - softplus(-k_i) (= log i - log f, so that f' = f / (f + i) without forming f + i).
Version 1 used the paper's log-space scan (`log_space_scan`: log f' = -softplus(δ), log i' = -softplus(-δ)),
much slower. A carried-over state is the scan's h_0. Recurrent form: the equations above, one step at a
time; state h (B, expand·d).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models.backbone import Mixer, MixerModel, State
from seqbench.models.common import diagonal_scan, g


class MinLSTMMixer(Mixer):
    def __init__(self, d_model: int, expand: int = 1) -> None:
        super().__init__()
        if expand < 1:
            raise OptionsError(f"minlstm: expand must be >= 1, got {expand}.")
        self.inner = expand * d_model
        self.to_gates_and_hidden = nn.Linear(d_model, 3 * self.inner, bias=False)
        self.out = nn.Linear(self.inner, d_model, bias=False) if expand > 1 else nn.Identity()

    def initial_state(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> State:
        return (torch.zeros(batch, self.inner, device=device, dtype=dtype),)

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        kf, ki, v = self.to_gates_and_hidden(x_t).chunk(3, -1)
        f, i = torch.sigmoid(kf), torch.sigmoid(ki)
        h = f / (f + i) * state[0] + i / (f + i) * g(v)
        return self.out(h), (h,)

    def _scan(self, x: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
        kf, ki, v = self.to_gates_and_hidden(x).chunk(3, -1)  # (B, T, inner) each
        delta = F.softplus(-kf) - F.softplus(-ki)  # log i - log f
        return diagonal_scan(torch.sigmoid(-delta), torch.sigmoid(delta) * g(v), h0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self._scan(x, None))

    def scan(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h = self._scan(x, state[0])
        return self.out(h), (h[:, -1],)


class MinLSTM(MixerModel):
    mixer = MinLSTMMixer
    version = 2  # 2: the linear-space scan (equal in float64; float32 rounding differs from version 1's)
