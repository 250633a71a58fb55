"""The two linear recurrences that most of today's recurrent mixers are made of, each in two forms.

Shapes: q, k, a, b, g are (B, H, T, d_k); v is (B, H, T, d_v); the state S is (B, H, d_k, d_v). One layout
throughout (fla's issue #547 was a chunked kernel reading (B, T, H, D) where the recurrent one read
(B, H, T, D)). g is a log decay (<= 0) per step and key channel; broadcast a per-head scalar decay to d_k.

Gated linear attention (Katharopoulos et al. 2020 with g = 0; RetNet's fixed decay; Yang et al. 2024's GLA):

    S_t = diag(exp g_t) S_{t-1} + k_t v_tᵀ          o_t = S_tᵀ q_t

Diagonal-plus-low-rank, the generalised delta rule (DeltaNet, Gated DeltaNet, RWKV-7; fla's `dplr`):

    S_t = diag(exp g_t) S_{t-1} + b_t (a_tᵀ S_{t-1}) + k_t v_tᵀ          o_t = S_tᵀ q_t

DeltaNet is a = k, b = -β k, k -> β k (S_t = (I - β k kᵀ) S_{t-1} + β k vᵀ); Gated DeltaNet multiplies the
transition by α_t = exp g_t, so b = -α β k.

`*_recurrent` run one step at a time: the specification. `*_chunked` split time into chunks of C steps, do
the work inside a chunk with matrix products and carry S across chunks (Yang et al. 2024, "Gated Linear
Attention Transformers with Hardware-Efficient Training", §3; the DPLR chunk is the WY/UT form of Yang et al.
2024, "Parallelizing Linear Transformers with the Delta Rule over Sequence Length", generalised to a
diagonal decay). Inside a chunk, with G_t = Σ_{s<=t} g_s (from the chunk's start) and u_t = S_{t-1}ᵀ a_t:

    S_t = e^{G_t} S_0 + Σ_{j<=t} e^{G_t - G_j} (b_j u_jᵀ + k_j v_jᵀ)
    U   = (I - tril₋₁(Ã B̃ᵀ))⁻¹ (tril₋₁(Ã K̃ᵀ) V + (a ⊙ e^{G_{t-1}}) S_0)       (a unit-triangular solve)
    O   = (q ⊙ e^{G}) S_0 + tril(Q̃ B̃ᵀ) U + tril(Q̃ K̃ᵀ) V

with Ã = a ⊙ e^{G_{t-1} - G_m}, Q̃ = q ⊙ e^{G_t - G_m}, B̃ = b ⊙ e^{G_m - G_j}, K̃ = k ⊙ e^{G_m - G_j}: the pair
products are e^{G_t - G_j} exactly, split at the chunk's middle step m so that no factor exceeds
e^{C/2 · max|g|}. Callers keep g >= MIN_LOG_DECAY, so with C <= 32 every factor stays below e^64 (float32
holds e^88).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import OptionsError

MIN_LOG_DECAY = (
    -4.0
)  # the mixers clamp their log decays here: e^-4 = 0.018 kept per step is forgetting already
CHUNK = 32


def _zero_state(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    B, H, _, dk = q.shape
    return q.new_zeros(B, H, dk, v.shape[-1])


def gla_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None = None,
    state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """S_t = diag(exp g_t) S_{t-1} + k_t v_tᵀ, o_t = S_tᵀ q_t, one step at a time. Returns (o, S_T)."""
    S = _zero_state(q, v) if state is None else state
    outs = []
    gs = g.exp().unbind(2) if g is not None else [None] * q.shape[2]
    for qt, kt, vt, at in zip(q.unbind(2), k.unbind(2), v.unbind(2), gs, strict=True):
        S = S if at is None else at.unsqueeze(-1) * S
        S = S + kt.unsqueeze(-1) * vt.unsqueeze(-2)  # (B, H, dk, dv)
        outs.append(torch.einsum("bhk,bhkv->bhv", qt, S))
    return torch.stack(outs, 2), S


def _chunks(x: torch.Tensor, C: int) -> torch.Tensor:
    """(B, H, T, d) -> (B, H, n, C, d), zero-padded at the end (zero k, v, b and g leave S unchanged)."""
    T = x.shape[2]
    pad = (-T) % C
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
    return x.unflatten(2, (-1, C))


def _cumulative(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if g is None else g.cumsum(-2)


def gla_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor | None = None,
    state: torch.Tensor | None = None,
    chunk: int = CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same recurrence, chunk by chunk. Returns (o, S_T), equal to gla_recurrent's."""
    T, C = q.shape[2], chunk
    qc, kc, vc = _chunks(q, C), _chunks(k, C), _chunks(v, C)
    G = _cumulative(None if g is None else _chunks(g, C), qc)  # (B, H, n, C, dk), <= 0, decreasing
    Gm, Gend = G[..., C // 2 : C // 2 + 1, :], G[..., -1:, :]
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    A = (qc * (G - Gm).exp()) @ (kc * (Gm - G).exp()).transpose(-1, -2)  # (B, H, n, C, C)
    intra = A.masked_fill(~causal, 0.0) @ vc  # (B, H, n, C, dv)
    q0 = qc * G.exp()  # reads the state at the chunk's start
    kv = (kc * (Gend - G).exp()).transpose(-1, -2) @ vc  # (B, H, n, dk, dv): the chunk's own writes
    decay = Gend.exp().transpose(-1, -2)  # (B, H, n, dk, 1)
    S = _zero_state(q, v) if state is None else state
    outs = []
    for c in range(qc.shape[2]):
        outs.append(intra[:, :, c] + q0[:, :, c] @ S)
        S = decay[:, :, c] * S + kv[:, :, c]
    return torch.stack(outs, 2).flatten(2, 3)[:, :, :T], S


def dplr_recurrent(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    g: torch.Tensor | None = None,
    state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """S_t = diag(exp g_t) S_{t-1} + b_t (a_tᵀ S_{t-1}) + k_t v_tᵀ, o_t = S_tᵀ q_t. Returns (o, S_T)."""
    S = _zero_state(q, v) if state is None else state
    outs = []
    gs = g.exp().unbind(2) if g is not None else [None] * q.shape[2]
    for qt, kt, vt, at, bt, dt in zip(*(x.unbind(2) for x in (q, k, v, a, b)), gs, strict=True):
        u = torch.einsum("bhk,bhkv->bhv", at, S)  # a_tᵀ S_{t-1}
        S = S if dt is None else dt.unsqueeze(-1) * S
        S = S + bt.unsqueeze(-1) * u.unsqueeze(-2) + kt.unsqueeze(-1) * vt.unsqueeze(-2)
        outs.append(torch.einsum("bhk,bhkv->bhv", qt, S))
    return torch.stack(outs, 2), S


def dplr_chunked(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    g: torch.Tensor | None = None,
    state: torch.Tensor | None = None,
    chunk: int = CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same recurrence, chunk by chunk (module docstring). Returns (o, S_T), equal to dplr_recurrent's."""
    T, C = q.shape[2], chunk
    qc, kc, vc, ac, bc = (_chunks(x, C) for x in (q, k, v, a, b))
    G = _cumulative(None if g is None else _chunks(g, C), qc)  # inclusive: decay up to and with step t
    Gprev = F.pad(G, (0, 0, 1, 0))[..., :-1, :]  # exclusive: decay before step t
    Gm, Gend = G[..., C // 2 : C // 2 + 1, :], G[..., -1:, :]
    at_, qt_ = ac * (Gprev - Gm).exp(), qc * (G - Gm).exp()
    bt_, kt_ = bc * (Gm - G).exp(), kc * (Gm - G).exp()
    ones = torch.ones(C, C, dtype=torch.bool, device=q.device)
    strict, causal = ones.tril(-1), ones.tril()
    A_ab = (at_ @ bt_.transpose(-1, -2)).masked_fill(~strict, 0.0)  # (B, H, n, C, C)
    A_ak = (at_ @ kt_.transpose(-1, -2)).masked_fill(~strict, 0.0)
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    L = eye - A_ab  # unit lower-triangular
    rhs = torch.cat([A_ak @ vc, ac * Gprev.exp()], dim=-1)  # solve for both right-hand sides at once
    sol = torch.linalg.solve_triangular(L, rhs, upper=False, unitriangular=True)
    U0, W = sol.split([v.shape[-1], a.shape[-1]], dim=-1)  # U = U0 + W S_0
    P_qb = (qt_ @ bt_.transpose(-1, -2)).masked_fill(~causal, 0.0)
    OV = (qt_ @ kt_.transpose(-1, -2)).masked_fill(~causal, 0.0) @ vc
    q0 = qc * G.exp()
    b_end = (bc * (Gend - G).exp()).transpose(-1, -2)  # (B, H, n, dk, C)
    KV = (kc * (Gend - G).exp()).transpose(-1, -2) @ vc
    decay = Gend.exp().transpose(-1, -2)
    S = _zero_state(q, v) if state is None else state
    outs = []
    for c in range(qc.shape[2]):
        U = U0[:, :, c] + W[:, :, c] @ S  # (B, H, C, dv): u_t = S_{t-1}ᵀ a_t for the chunk's steps
        outs.append(q0[:, :, c] @ S + P_qb[:, :, c] @ U + OV[:, :, c])
        S = decay[:, :, c] * S + b_end[:, :, c] @ U + KV[:, :, c]
    return torch.stack(outs, 2).flatten(2, 3)[:, :, :T], S


# ---- what the mixers built on these recurrences share ----------------------------------------------------

Form = Literal["chunked", "recurrent"]
State = tuple[torch.Tensor, ...]


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, heads·d) -> (B, heads, T, d)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, T, d) -> (B, T, heads·d)."""
    return x.transpose(1, 2).flatten(2)


def check_form(name: str, form: str, chunk: int, forms: tuple[str, ...] = ("chunked", "recurrent")) -> None:
    if form not in forms:
        raise OptionsError(f"{name}: form must be one of {', '.join(forms)}, got {form!r}.")
    if not 1 <= chunk <= 64:
        raise OptionsError(f"{name}: chunk must be in 1..64 (decays are split at its middle), got {chunk}.")


class TwoFormMixer(nn.Module):
    """A sequence mixer with a recurrent form (the specification) and a chunked form (the default).

    Subclasses implement `_run(x, state, form) -> (y, state)` over (B, T, d), form "chunked" or
    "recurrent" (both batch the projections; "recurrent" loops over time in the recurrence itself), and
    `initial_state`. `forward` runs the whole sequence in `self.form`, `scan` continues the chunked form from
    a state, `step` is one step of the recurrent form. `state_size` is the number of floats the recurrent
    form carries per sequence (the sum over `initial_state`)."""

    form: str = "chunked"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        return self._run(x, None, self.form)[0]

    def scan(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        return self._run(x, state, "chunked")

    def step(self, x_t: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:  # x_t: (B, d)
        y, state = self._run(x_t.unsqueeze(1), state, "recurrent")
        return y.squeeze(1), state

    def _run(self, x: torch.Tensor, state: State | None, form: str) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def initial_state(
        self, batch: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> State:
        raise NotImplementedError

    @property
    def state_size(self) -> int:
        return sum(s[0].numel() for s in self.initial_state(1, "meta"))
