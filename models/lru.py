"""LRU, the Linear Recurrent Unit (Orvieto, Smith, Gu, Fernando, Gulcehre, Pascanu & De 2023, "Resurrecting
Recurrent Neural Networks for Long Sequences", ICML, arXiv 2303.06349), as a mixer in the block backbone
(models/backbone.py).

A linear recurrence with a diagonal complex transition in exponential parametrisation, normalised input,
and a real read-out (the paper's eq. 6-8 and its Appendix A code):

    λ = exp(-exp(ν) + i·exp(θ))                         |λ| < 1 for every ν: stable by construction
    γ = exp(γ_log), initialised to √(1 - |λ|²)          normalisation of the input
    h_t = λ ⊙ h_{t-1} + γ ⊙ (B u_t)                     h ∈ C^N, B ∈ C^{N×d}
    y_t = Re(C h_t) + D ⊙ u_t                           C ∈ C^{d×N}, D ∈ R^d

Initialisation: |λ| uniform on the ring [r_min, r_max] = [0.9, 0.999] and phase in [0, max_phase = 2π]
(the paper's defaults for its long-range tasks); B, C complex Gaussian with variance 1/(2d) and 1/N. N =
expand·d (expand 1). The LRU is time-invariant, so its parallel form is a convolution of γ ⊙ (B u) with
λ^t, one per state, computed by FFT in O(T log T); a carried-over state adds λ^{t+1} h_0.
Recurrent form: the equations, one step at a time; state h ∈ C^N (2N floats).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models.backbone import Mixer, MixerModel, State
from seqbench.models.common import complex_dtype


class LRUMixer(Mixer):
    def __init__(
        self,
        d_model: int,
        expand: int = 1,
        r_min: float = 0.9,
        r_max: float = 0.999,
        max_phase: float = 2 * math.pi,
    ) -> None:
        super().__init__()
        if expand < 1 or not 0 <= r_min < r_max <= 1:
            raise OptionsError("lru: expand must be >= 1 and 0 <= r_min < r_max <= 1.")
        d, N = d_model, expand * d_model
        self.N = N
        u1, u2 = torch.rand(N), torch.rand(N)
        nu_log = torch.log(-0.5 * torch.log(u1 * (r_max**2 - r_min**2) + r_min**2))
        theta_log = torch.log(max_phase * u2 + 1e-8)
        self.nu_log, self.theta_log = nn.Parameter(nu_log), nn.Parameter(theta_log)
        mod = torch.exp(-torch.exp(nu_log))
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - mod**2)))
        self.B = nn.Parameter(torch.randn(N, d, 2) / math.sqrt(2 * d))  # real and imaginary parts
        self.C = nn.Parameter(torch.randn(d, N, 2) / math.sqrt(N))
        self.D = nn.Parameter(torch.randn(d))

    def _log_lambda(self) -> torch.Tensor:  # (N,) complex
        return torch.complex(-torch.exp(self.nu_log), torch.exp(self.theta_log))

    def _input(self, u: torch.Tensor) -> torch.Tensor:  # (..., d) -> (..., N) complex: γ ⊙ (B u)
        # one real product with the real and imaginary rows interleaved, read as complex without a copy
        # (version 1 cast u to complex first: a complex product costs four real ones)
        B = torch.view_as_real(torch.view_as_complex(self.B) * torch.exp(self.gamma_log).unsqueeze(1))
        Bu = u @ B.transpose(1, 2).flatten(0, 1).transpose(0, 1)  # (..., 2N): Re, Im interleaved
        return torch.view_as_complex(Bu.unflatten(-1, (self.N, 2)))

    def _read(self, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # Re(C h) + D u
        # Re(C h) = C_r h_r - C_i h_i: one real product over h's interleaved real and imaginary parts
        C = torch.stack([self.C[..., 0], -self.C[..., 1]], -1).flatten(1)  # (d, 2N)
        return torch.view_as_real(h).flatten(-2) @ C.transpose(0, 1) + self.D * u

    def initial_state(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> State:
        return (torch.zeros(batch, self.N, device=device, dtype=complex_dtype(dtype)),)

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h = torch.exp(self._log_lambda()) * state[0] + self._input(x_t)
        return self._read(h, x_t), (h,)

    def _scan(self, x: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
        T = x.shape[1]
        b = self._input(x)  # (B, T, N)
        t = torch.arange(T, device=x.device, dtype=x.dtype)
        log_lam = self._log_lambda()
        powers = torch.exp(t.unsqueeze(1) * log_lam)  # (T, N): λ^t
        n = 2 * T
        h = torch.fft.ifft(torch.fft.fft(b, n=n, dim=1) * torch.fft.fft(powers, n=n, dim=0), dim=1)[:, :T]
        if h0 is not None:
            h = h + (powers * torch.exp(log_lam)) * h0.unsqueeze(1)  # λ^{t+1} h_0
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._read(self._scan(x, None), x)

    def scan(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        h = self._scan(x, state[0])
        return self._read(h, x), (h[:, -1],)


class LRU(MixerModel):
    mixer = LRUMixer
    version = 2  # 2: real matrix products in and out (equal in float64; float32 rounding differs)
