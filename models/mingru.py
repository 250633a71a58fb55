"""minGRU (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We Needed?", arXiv 2410.01201),
as a mixer in the block backbone (models/backbone.py).

The GRU with its gates read from the input only, so that the recurrence is linear in h and runs as a scan:

    z_t = σ(W_z x_t)                         update gate
    h̃_t = g(W_h x_t),   g(v) = v + ½ (v ≥ 0), σ(v) (v < 0)       positive candidate
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t
    y_t = W_o h_t                            (W_o only when expand > 1, as in the paper's expansion)

Parallel form: the linear-space diagonal scan (`diagonal_scan`: one fused multiply-add per step with a
hand-written backward), h_t = a_t ⊙ h_{t-1} + b_t with a_t = 1 - z_t and b_t = z_t ⊙ h̃_t, computed for all t
at once. Since a_t ∈ (0, 1) and b_t > 0 this is the recurrence itself, stable in linear space, and much
cheaper than the paper's log-space scan (its Listing "minGRU log-space", `log_space_scan` here: a logcumsumexp,
an exp and a log per element, forward and backward; version 1 of this model used it). A state carried over
from earlier steps is the scan's h_0 (lucidrains' package, whose log-space form took log h_0, disagreed with
its sequential form in that case: its issue #9). The
variant is the paper's minGRU with the positive g (its log-space version) and no bias, as in its code.
Recurrent form: the three equations above, one step at a time; state h (B, expand·d).
"""

from __future__ import annotations

import torch
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models.backbone import Mixer, MixerModel, State
from seqbench.models.common import diagonal_scan, g


class MinGRUMixer(Mixer):
    def __init__(self, d_model: int, expand: int = 1) -> None:
        super().__init__()
        if expand < 1:
            raise OptionsError(f"mingru: expand must be >= 1, got {expand}.")
        self.inner = expand * d_model
        self.to_gate_and_hidden = nn.Linear(d_model, 2 * self.inner, bias=False)
        self.out = nn.Linear(self.inner, d_model, bias=False) if expand > 1 else nn.Identity()

    def initial_state(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> State:
        return (torch.zeros(batch, self.inner, device=device, dtype=dtype),)

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        k, v = self.to_gate_and_hidden(x_t).chunk(2, -1)
        z = torch.sigmoid(k)
        h = (1 - z) * state[0] + z * g(v)
        return self.out(h), (h,)

    def _scan(self, x: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
        k, v = self.to_gate_and_hidden(x).chunk(2, -1)  # (B, T, inner) each
        z = torch.sigmoid(k)
        return diagonal_scan(1 - z, z * g(v), h0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self._scan(x, None))

    def scan(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h = self._scan(x, state[0])
        return self.out(h), (h[:, -1],)


class MinGRU(MixerModel):
    mixer = MinGRUMixer
    version = 2  # 2: the linear-space scan (equal in float64; float32 rounding differs from version 1's)
