"""S4D, the diagonal structured state space (Gu, Gupta, Goel & Ré 2022, "On the Parameterization and
Initialization of Diagonal State Space Models", NeurIPS, arXiv 2206.11893), as a mixer in the block backbone
(models/backbone.py). Time-invariant (LTI): the same transition at every step, whatever the input.

Per channel c (D = expand·d channels) a continuous SSM with N/2 complex modes (N = d_state real numbers),
discretised by zero-order hold with a learned step Δ_c:

    A_n = -exp(log_A_real_n) + i·A_imag_n                S4D-Lin initialisation: A_n = -½ + iπn
    Ā = exp(Δ A),   C̄ = C ⊙ (exp(Δ A) - 1) / A           (B = 1 folded into C, as in the paper's s4d.py)
    h_t = Ā ⊙ h_{t-1} + u_t                              h ∈ C^{N/2} per channel
    y_t = 2·Re(C̄ · h_t) + D u_t
    out = GLU(W_out GELU(y))                             (the S4 block's output: GELU, then a linear layer
                                                          to 2d and a gated linear unit)

Δ is initialised log-uniformly in [dt_min, dt_max] = [0.001, 0.1], C complex Gaussian. The parallel form is
the paper's convolution: the kernel K_l = 2·Re(Σ_n C̄_n Ā_n^l) (a Vandermonde product, O(D·N·T), as one
batched matrix product of √T-factored powers: `_kernel`), then
y = K * u by FFT in O(T log T); a carried-over state adds 2·Re(C̄ Ā^{t+1} h_0) and the final state is
Ā^T h_0 + Σ_s Ā^{T-1-s} u_s. Recurrent form: the equations, one step at a time; state D·N/2 complex numbers
(D·N floats). With expand > 1 a linear layer d -> D reads the input first (none at expand 1, as in the paper).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models.backbone import Mixer, MixerModel, State
from seqbench.models.common import complex_dtype


class S4DMixer(Mixer):
    def __init__(
        self, d_model: int, expand: int = 1, d_state: int = 64, dt_min: float = 0.001, dt_max: float = 0.1
    ) -> None:
        super().__init__()
        if expand < 1 or d_state < 2 or d_state % 2 or not 0 < dt_min <= dt_max:
            raise OptionsError("s4d: expand >= 1, d_state even and >= 2, 0 < dt_min <= dt_max.")
        D, n = expand * d_model, d_state // 2
        self.D_, self.n = D, n
        self.read_in = nn.Linear(d_model, D) if expand > 1 else nn.Identity()
        log_dt = torch.rand(D) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(D, n)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(n, dtype=torch.float32).repeat(D, 1))
        self.C = nn.Parameter(torch.randn(D, n, 2) * math.sqrt(0.5))  # complex, real and imaginary parts
        self.skip = nn.Parameter(torch.randn(D))
        self.out = nn.Linear(D, 2 * d_model)

    def _discrete(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Δ A, C̄), both (D, N/2) complex."""
        A = torch.complex(-torch.exp(self.log_A_real), self.A_imag)
        dtA = A * torch.exp(self.log_dt).unsqueeze(-1)
        return dtA, torch.view_as_complex(self.C) * (torch.exp(dtA) - 1) / A

    def _finish(self, y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return F.glu(self.out(F.gelu(y + self.skip * u)), -1)

    def initial_state(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> State:
        return (torch.zeros(batch, self.D_, self.n, device=device, dtype=complex_dtype(dtype)),)

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        u = self.read_in(x_t)  # (B, D)
        dtA, C = self._discrete()
        h = torch.exp(dtA) * state[0] + u.unsqueeze(-1)
        return self._finish(2 * (h * C).sum(-1).real, u), (h,)

    def _kernel(self, dtA: torch.Tensor, C: torch.Tensor, T: int) -> torch.Tensor:
        """K_t = 2·Re Σ_n C̄_n Ā_n^t for t < T, (D, T). With t = c·j + i (c = ⌈√T⌉, i < c):
        Ā^t = Ā^{c·j} Ā^i, so K[:, j, i] = 2·Re Σ_n (C̄_n Ā_n^{c·j}) Ā_n^i is one batched real matrix product
        over the 2·(N/2) real and imaginary parts, and only D·N/2·(c + T/c) ≈ 2 D·N/2·√T complex exponentials
        are taken instead of D·N/2·T (version 1 took them all: the exponentials were a third of its train step)."""
        c = max(1, math.ceil(math.sqrt(T)))
        rows = -(-T // c)
        real = dtA.real.dtype
        lo = torch.exp(dtA.unsqueeze(-1) * torch.arange(c, device=dtA.device, dtype=real))  # (D, N/2, c)
        hi = C.unsqueeze(-1) * torch.exp(
            dtA.unsqueeze(-1) * (c * torch.arange(rows, device=dtA.device, dtype=real))
        )
        left = torch.cat([hi.real, -hi.imag], 1).transpose(1, 2)  # (D, rows, N): Re(a b) = a_r b_r - a_i b_i
        right = torch.cat([lo.real, lo.imag], 1)  # (D, N, c)
        return 2 * torch.bmm(left, right).flatten(1)[:, :T]

    def _convolve(self, u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        T = u.shape[1]
        n = 2 * T
        y = torch.fft.irfft(torch.fft.rfft(u.transpose(1, 2), n=n) * torch.fft.rfft(K, n=n), n=n)[..., :T]
        return y.transpose(1, 2)  # (B, T, D)

    def _powers(self, dtA: torch.Tensor, T: int, dtype: torch.dtype) -> torch.Tensor:
        t = torch.arange(T, device=dtA.device, dtype=dtype)
        return torch.exp(dtA.unsqueeze(-1) * t)  # (D, N/2, T): Ā^t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.read_in(x)
        dtA, C = self._discrete()
        return self._finish(self._convolve(u, self._kernel(dtA, C, x.shape[1])), u)

    def scan(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        u = self.read_in(x)
        T = x.shape[1]
        dtA, C = self._discrete()
        powers = self._powers(dtA, T, x.dtype)
        y = self._convolve(u, self._kernel(dtA, C, T))
        decay = powers * torch.exp(dtA).unsqueeze(-1)  # Ā^{t+1}
        y = y + 2 * torch.einsum("bdn,dn,dnt->btd", state[0], C, decay).real
        h = state[0] * decay[..., -1] + torch.einsum("btd,dnt->bdn", u.to(powers.dtype), powers.flip(-1))
        return self._finish(y, u), (h,)


class S4D(MixerModel):
    mixer = S4DMixer
    version = 2  # 2: the kernel from √T-factored powers (equal in float64; float32 rounding differs)
