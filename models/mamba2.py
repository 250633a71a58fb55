"""Mamba-2, state space duality (SSD) (Dao & Gu 2024, "Transformers are SSMs: Generalized Models and Efficient
Algorithms Through Structured State Space Duality", ICML, arXiv 2405.21060), as a mixer in the block backbone
(models/backbone.py).

The selective SSM with a scalar decay per head, so that within a chunk it is a masked attention-like matrix
product and across chunks a short recurrence. With D = expand·d channels in H = D / head_dim heads of width
P = head_dim, and N = d_state:

    z, x, B, C, Δ = W_in u              (D, D, N, N, H);  x, B, C ← SiLU(·)
    Δ_t = softplus(Δ_t + b_Δ),  a_t = exp(Δ_t A_h),  A_h = -exp(A_log_h)      one scalar per head
    h_t = a_t h_{t-1} + (Δ_t x_t) ⊗ B_t            h ∈ R^{H×P×N}, B and C shared by the heads (one group)
    y_t = h_t C_t + D_skip,h x_t
    out = W_out RMSNorm(y ⊙ SiLU(z))               (the gated RMSNorm of the paper's block)

Initialisation as the paper's code: A_h = -U[1, 16], softplus(b_Δ) log-uniform in [0.001, 0.1], D_skip = 1.
The block's short convolution (length 4 in the paper, on x, B, C after the projection) is the backbone's
(`short_conv`, before the projection: see models/backbone.py); the backbone's MLP follows (`mlp_ratio=0`
removes it, as in the paper's block).

Parallel form: the chunked SSD algorithm as `ssd_minimal_discrete` in state-spaces/mamba
(mamba_ssm/modules/ssd_minimal.py) states it: within each chunk of `chunk` steps the quadratic (attention-
like) form with the decay mask exp(segsum(Δ A)), across chunks the states passed on by a recurrence over
chunks. Recurrent form: the equations, one step at a time; state h (B, H, P, N).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models.backbone import Mixer, MixerModel, State


def segsum(x: torch.Tensor) -> torch.Tensor:
    """(..., T) -> (..., T, T): out[..., i, j] = Σ_{j<k≤i} x_k for j ≤ i, -inf above the diagonal."""
    T = x.shape[-1]
    x = x.unsqueeze(-1).expand(*x.shape, T)  # x[..., i, j] = x_i
    below = torch.tril(torch.ones(T, T, dtype=torch.bool, device=x.device), -1)
    sums = x.masked_fill(~below, 0).cumsum(-2)
    return sums.masked_fill(~torch.tril(torch.ones_like(below), 0), -torch.inf)


def ssd(
    X: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk: int, h0: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """X (b, T, h, p) = Δ x, A (b, T, h) = Δ A, B and C (b, T, n), h0 (b, h, p, n); T a multiple of chunk.
    Returns y (b, T, h, p) and the final state (b, h, p, n)."""
    b, T, h, p = X.shape
    c = T // chunk
    X, A = X.view(b, c, chunk, h, p), A.view(b, c, chunk, h).permute(0, 3, 1, 2)  # A: (b, h, c, l)
    B, C = B.view(b, c, chunk, -1), C.view(b, c, chunk, -1)
    A_cum = A.cumsum(-1)
    L = torch.exp(segsum(A))  # (b, h, c, l, l)
    y_diag = torch.einsum("bcln,bcsn,bhcls,bcshp->bclhp", C, B, L, X)  # within chunks
    decay_states = torch.exp(A_cum[..., -1:] - A_cum)  # (b, h, c, l)
    states = torch.einsum("bcln,bhcl,bclhp->bchpn", B, decay_states, X)  # each chunk's own contribution
    states = torch.cat([h0.unsqueeze(1), states], 1)  # (b, c+1, h, p, n)
    decay_chunk = torch.exp(segsum(F.pad(A_cum[..., -1], (1, 0))))  # (b, h, c+1, c+1)
    states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
    states, final = states[:, :-1], states[:, -1]
    y_off = torch.einsum("bcln,bchpn,bhcl->bclhp", C, states, torch.exp(A_cum))  # from earlier chunks
    return (y_diag + y_off).reshape(b, T, h, p), final


class Mamba2Mixer(Mixer):
    def __init__(
        self, d_model: int, expand: int = 2, d_state: int = 16, head_dim: int = 16, chunk: int = 32
    ) -> None:
        super().__init__()
        if min(expand, d_state, head_dim, chunk) < 1:
            raise OptionsError("mamba2: expand, d_state, head_dim and chunk must be >= 1.")
        heads = max(1, expand * d_model // head_dim)
        P = expand * d_model // heads
        D = heads * P
        self.H, self.P, self.N, self.D_, self.chunk = heads, P, d_state, D, chunk
        self.in_proj = nn.Linear(d_model, 2 * D + 2 * d_state + heads, bias=False)
        dt = torch.exp(torch.rand(heads) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(
            min=1e-4
        )
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        self.A_log = nn.Parameter(torch.log(torch.empty(heads).uniform_(1, 16)))
        self.skip = nn.Parameter(torch.ones(heads))
        self.norm = nn.RMSNorm(D, eps=1e-5)
        self.out_proj = nn.Linear(D, d_model, bias=False)

    def _inputs(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z, x, Bm, Cm, dt = self.in_proj(u).split([self.D_, self.D_, self.N, self.N, self.H], -1)
        x = F.silu(x).unflatten(-1, (self.H, self.P))
        return z, x, F.silu(Bm), F.silu(Cm), F.softplus(dt + self.dt_bias)

    def _out(self, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        y = (y + self.skip.unsqueeze(-1) * x).flatten(-2)
        return self.out_proj(self.norm(y * F.silu(z)))

    def initial_state(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> State:
        return (torch.zeros(batch, self.H, self.P, self.N, device=device, dtype=dtype),)

    def step(self, u_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        z, x, Bm, Cm, dt = self._inputs(u_t)  # x (B, H, P), Bm Cm (B, N), dt (B, H)
        a = torch.exp(dt * -torch.exp(self.A_log))[..., None, None]
        h = a * state[0] + (dt.unsqueeze(-1) * x).unsqueeze(-1) * Bm[:, None, None, :]
        y = (h * Cm[:, None, None, :]).sum(-1)
        return self._out(y, x, z), (h,)

    def scan(self, u: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        z, x, Bm, Cm, dt = self._inputs(u)
        T = u.shape[1]
        pad = -T % self.chunk  # zero steps at the end: decay 1 and no input, so the final state holds
        X = F.pad(dt.unsqueeze(-1) * x, (0, 0, 0, 0, 0, pad))
        A = F.pad(dt * -torch.exp(self.A_log), (0, 0, 0, pad))
        Bp, Cp = F.pad(Bm, (0, 0, 0, pad)), F.pad(Cm, (0, 0, 0, pad))
        y, h = ssd(X, A, Bp, Cp, self.chunk, state[0])
        return self._out(y[:, :T], x, z), (h,)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.scan(u, self.initial_state(u.shape[0], u.device, u.dtype))[0]


class Mamba2(MixerModel):
    mixer = Mamba2Mixer
    short_conv = 4
