"""Mamba, the selective state space model S6 (Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling with
Selective State Spaces", arXiv 2312.00752), as a mixer in the block backbone (models/backbone.py).

The SSM's step Δ, input matrix B and output matrix C depend on the input, so it can select what to keep
(the paper's Algorithm 2). With D = expand·d channels and N = d_state:

    x, z = W_in u                       (B, T, D) each;  x ← SiLU(x)
    Δ_t = softplus(W_Δ (W_r x_t) + b_Δ)  (D,)   low-rank: W_r to dt_rank = ⌈d/16⌉, then up to D
    B_t, C_t = W_B x_t, W_C x_t          (N,) each, shared by the channels
    h_t = exp(Δ_t ⊗ A) ⊙ h_{t-1} + (Δ_t ⊙ x_t) ⊗ B_t       h ∈ R^{D×N}, A = -exp(A_log) ∈ R^{D×N}
    y_t = h_t C_t + D_skip ⊙ x_t
    out = W_out (y ⊙ SiLU(z))

As `selective_scan_ref` in state-spaces/mamba (mamba_ssm/ops/selective_scan_interface.py) computes it, with
the discretisation A̅ = exp(ΔA), B̅ = ΔB (the paper's simplified ZOH for B). Initialisation as the paper's
code: A = -(1, 2, …, N) per channel (S4D-Real), Δ's bias so that softplus(b_Δ) is log-uniform in
[0.001, 0.1], D_skip = 1. The block's short convolution (length 4 in the paper) is the backbone's
(`short_conv`, before the input projection: see models/backbone.py). The paper's Mamba block has no MLP;
here the backbone's MLP follows it (`mlp_ratio=0` removes it).

Parallel form, `implementation="reference"` (and wherever the C++ loops do not run: no compiler, a GPU): the
time axis in chunks of `chunk` steps; per chunk exp(ΔA) and ΔB x are formed (B, L, D, N) and run through
`diagonal_scan`, then contracted with C; a large chunk is recomputed in the backward pass (activation
checkpointing) so memory stays O(T·D) rather than O(T·D·N), as the paper's fused kernel recomputes its states.
`implementation="fast"` (the default): the same scan fused in C++ (models/csrc/selective_scan.cpp), forward
and hand-written backward, never forming the (L, B, D, N) tensors; its backward recomputes each chunk's
states from the state saved at the chunk's start. The two agree in float64 (tests/test_mixers.py); they
compute the same function, so the model's version stays (the row's `kernels` column says which ran).
Recurrent form: the equations, one step at a time; state h (B, D, N).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from seqbench.errors import OptionsError
from seqbench.models import cpp_loops
from seqbench.models.backbone import Mixer, MixerModel, State
from seqbench.models.common import diagonal_scan

# A chunk's (L, B, D, N) tensors above this many elements are recomputed in the backward pass rather than
# kept (2^22 floats: 16 MB each in float32); small chunks are kept, which saves the recomputation.
_RECOMPUTE_ABOVE = 2**22


def _selective_chunk(
    h0: torch.Tensor, dt: torch.Tensor, x: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor, A: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk of the selective scan, time-major: dt, x (L, B, D); Bm, Cm (L, B, N); A (D, N); h0 (B, D, N).
    Returns y (L, B, D) and the last state."""
    a = torch.exp(dt.unsqueeze(-1) * A)  # (L, B, D, N)
    b = (dt * x).unsqueeze(-1) * Bm.unsqueeze(2)
    h = diagonal_scan(a, b, h0, time_major=True)
    return torch.einsum("lbdn,lbn->lbd", h, Cm), h[-1]


class _SelectiveScan(torch.autograd.Function):
    """The fused scan (models/csrc/selective_scan.cpp): time-major dt, x (T, B, D), Bm, Cm (T, B, N), A (D, N),
    h0 (B, D, N) -> y (T, B, D) and the last state (B, D, N). It keeps the states at the starts of chunks of
    `chunk` steps for its backward, which recomputes the rest."""

    @staticmethod
    def forward(ctx: Any, ops: Any, chunk: int, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dt, x, Bm, Cm, A, h0 = tensors
        y, h, marks = ops.selective_scan_forward(dt, x, Bm, Cm, A, h0, chunk, True)
        ctx.ops, ctx.chunk = ops, chunk
        ctx.save_for_backward(dt, x, Bm, Cm, A, marks)
        return y, h

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor, dh: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        dt, x, Bm, Cm, A, marks = ctx.saved_tensors
        grads = ctx.ops.selective_scan_backward(dy, dh, dt, x, Bm, Cm, A, marks, ctx.chunk)
        return None, None, *grads


def selective_scan(
    ops: Any,
    chunk: int,
    dt: torch.Tensor,
    x: torch.Tensor,
    Bm: torch.Tensor,
    Cm: torch.Tensor,
    A: torch.Tensor,
    h0: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused selective scan on time-major inputs (see `_SelectiveScan`); under `torch.no_grad` without the
    chunk states a backward would need."""
    tensors = tuple(t.contiguous() for t in (dt, x, Bm, Cm, A, h0))
    if torch.is_grad_enabled():
        return _SelectiveScan.apply(ops, chunk, *tensors)
    y, h, _ = ops.selective_scan_forward(*tensors, chunk, False)
    return y, h


class MambaMixer(Mixer):
    def __init__(
        self,
        d_model: int,
        expand: int = 2,
        d_state: int = 16,
        dt_rank: int = 0,  # 0: ⌈d_model / 16⌉, the paper's "auto"
        chunk: int = 64,
        implementation: Literal["fast", "reference"] = "fast",
    ) -> None:
        super().__init__()
        if expand < 1 or d_state < 1 or dt_rank < 0 or chunk < 1:
            raise OptionsError("mamba: expand, d_state and chunk must be >= 1, dt_rank >= 0.")
        if implementation not in ("fast", "reference"):
            raise OptionsError(
                f"mamba: implementation must be 'fast' or 'reference', got {implementation!r}."
            )
        D, N = expand * d_model, d_state
        R = dt_rank or math.ceil(d_model / 16)
        self.D_, self.N, self.R, self.chunk = D, N, R, chunk
        self.fast = implementation == "fast"
        self.in_proj = nn.Linear(d_model, 2 * D, bias=False)
        self.x_proj = nn.Linear(D, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, D)
        nn.init.uniform_(self.dt_proj.weight, -(R**-0.5), R**-0.5)
        dt = torch.exp(torch.rand(D) * (math.log(0.1) - math.log(0.001)) + math.log(0.001)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse of softplus
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(D, 1))
        self.skip = nn.Parameter(torch.ones(D))
        self.out_proj = nn.Linear(D, d_model, bias=False)

    def _inputs(self, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, z = self.in_proj(u).chunk(2, -1)
        x = F.silu(x)
        dt, Bm, Cm = self.x_proj(x).split([self.R, self.N, self.N], -1)
        return x, z, F.softplus(self.dt_proj(dt)), Bm, Cm

    def _out(self, y: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.out_proj((y + self.skip * x) * F.silu(z))

    def initial_state(self, batch: int, device: torch.device | str, dtype: torch.dtype) -> State:
        return (torch.zeros(batch, self.D_, self.N, device=device, dtype=dtype),)

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        x, z, dt, Bm, Cm = self._inputs(x_t)  # (B, D), (B, D), (B, D), (B, N), (B, N)
        A = -torch.exp(self.A_log)
        h = torch.exp(dt.unsqueeze(-1) * A) * state[0] + (dt * x).unsqueeze(-1) * Bm.unsqueeze(1)
        y = (h * Cm.unsqueeze(1)).sum(-1)
        return self._out(y, x, z), (h,)

    def scan(self, u: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        x, z, dt, Bm, Cm = self._inputs(u)
        A = -torch.exp(self.A_log)
        ops = None
        if self.fast and u.dtype in (torch.float32, torch.float64):
            ops = cpp_loops.ops_for("mamba", u.device)
        if ops is not None:
            series = (t.transpose(0, 1) for t in (dt, x, Bm, Cm))
            y, h = selective_scan(ops, self.chunk, *series, A, state[0])
            return self._out(y.transpose(0, 1), x, z), (h,)
        h, ys = state[0], []
        # time-major (T, B, ·), cut with split, never t[s : s + chunk]: each slice's backward would write a
        # full-size zero tensor, quadratic in T (PERF-NOTES); that was two thirds of version 1's train step
        series = [t.transpose(0, 1).split(self.chunk) for t in (dt, x, Bm, Cm)]
        for parts in zip(*series, strict=True):
            if parts[0].numel() * self.N > _RECOMPUTE_ABOVE and torch.is_grad_enabled():
                y, h = checkpoint(_selective_chunk, h, *parts, A, use_reentrant=False)
            else:
                y, h = _selective_chunk(h, *parts, A)
            ys.append(y)
        return self._out(torch.cat(ys, 0).transpose(0, 1), x, z), (h,)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.scan(u, self.initial_state(u.shape[0], u.device, u.dtype))[0]


class Mamba(MixerModel):
    mixer = MambaMixer
    short_conv = 4
