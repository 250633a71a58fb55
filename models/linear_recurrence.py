"""The two linear recurrences that most of today's recurrent mixers are made of, each in two forms.

Shapes: q, k, a, b, g are (B, H, T, d_k); v is (B, H, T, d_v); the state S is (B, H, d_k, d_v). One layout
throughout (fla's issue #547 was a chunked kernel reading (B, T, H, D) where the recurrent one read
(B, H, T, D)). g is a log decay (<= 0) per step and key channel, or (B, H, T, 1): one per head, broadcast
over d_k (cheaper: the decay factors are then computed once per step, not per channel).

Gated linear attention (Katharopoulos et al. 2020 with g = 0; RetNet's fixed decay; Yang et al. 2024's GLA):

    S_t = diag(exp g_t) S_{t-1} + k_t v_tᵀ          o_t = S_tᵀ q_t

Diagonal-plus-low-rank, the generalised delta rule (DeltaNet, Gated DeltaNet, RWKV-7; fla's `dplr`):

    S_t = diag(exp g_t) S_{t-1} + b_t (a_tᵀ S_{t-1}) + k_t v_tᵀ          o_t = S_tᵀ q_t

DeltaNet is a = k, b = -β k, k -> β k (S_t = (I - β k kᵀ) S_{t-1} + β k vᵀ); Gated DeltaNet multiplies the
transition by α_t = exp g_t, so b = -α β k.

`*_recurrent` run one step at a time: the specification. `chunked_or_fused` runs the same recurrence, either
form's, through one C++ loop with a hand-written backward (csrc/linear_recurrence.cpp) where the C++ loops
build (the CPU) and the mixer's `implementation` is "fast" (the default), else `*_chunked`; same function, so
no mixer's version changes, and the row's `kernels` column says which ran. `*_chunked` split time into chunks of C steps, do
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

from typing import Any

import torch
import torch.nn.functional as F

from seqbench.errors import OptionsError
from seqbench.models import cpp_loops
from seqbench.models.backbone import Mixer, State

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


def _weigh(x: torch.Tensor, log_w: torch.Tensor | None) -> torch.Tensor:
    """x ⊙ exp(log_w); log_w None (no decay anywhere) leaves x as it is, with no work done."""
    return x if log_w is None else x * log_w.exp()


class _Decays:
    """Within-chunk cumulative log decays G (inclusive), G_prev (exclusive), the middle and the end; all
    differences None when there is no decay."""

    def __init__(self, g: torch.Tensor | None, C: int) -> None:
        self.G = None if g is None else _chunks(g, C).cumsum(-2)  # (B, H, n, C, dk), <= 0, decreasing
        if self.G is not None:
            self.Gprev = F.pad(self.G, (0, 0, 1, 0))[..., :-1, :]
            self.mid, self.end = self.G[..., C // 2 : C // 2 + 1, :], self.G[..., -1:, :]

    def __call__(self, what: str) -> torch.Tensor | None:
        if self.G is None:
            return None
        G, Gprev, mid, end = self.G, self.Gprev, self.mid, self.end
        return {
            "G": G, "G-mid": G - mid, "mid-G": mid - G, "Gprev": Gprev, "Gprev-mid": Gprev - mid,
            "end-G": end - G, "end": end.transpose(-1, -2),
        }[what]  # fmt: skip


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
    D = _Decays(g, C)
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
    A = _weigh(qc, D("G-mid")) @ _weigh(kc, D("mid-G")).transpose(-1, -2)  # (B, H, n, C, C)
    intra = A.masked_fill(~causal, 0.0) @ vc  # (B, H, n, C, dv)
    q0 = _weigh(qc, D("G"))  # reads the state at the chunk's start
    kv = _weigh(kc, D("end-G")).transpose(-1, -2) @ vc  # (B, H, n, dk, dv): the chunk's own writes
    S = _zero_state(q, v) if state is None else state
    # Without decay the chunks' start states are a running sum of kv; a loop over the chunks is still
    # faster than one cumsum over (B, H, n + 1, dk, dv) (its cat, and a flip in its backward): 1.3-1.7x on
    # the whole function at T 2000 for Based's d_k 273 and linear attention's 32, measured here.
    decay = [None] * kv.shape[2] if g is None else D("end").exp().unbind(2)  # (B, H, dk, 1) each
    outs = []
    # unbind, never [:, :, c]: each indexing's backward would write a full-size zero tensor (PERF-NOTES)
    for intra_c, q0_c, kv_c, decay_c in zip(*(t.unbind(2) for t in (intra, q0, kv)), decay, strict=True):
        outs.append(intra_c + q0_c @ S)
        S = S + kv_c if decay_c is None else decay_c * S + kv_c
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
    D = _Decays(g, C)
    at_, qt_ = _weigh(ac, D("Gprev-mid")), _weigh(qc, D("G-mid"))
    bt_, kt_ = _weigh(bc, D("mid-G")), _weigh(kc, D("mid-G"))
    ones = torch.ones(C, C, dtype=torch.bool, device=q.device)
    strict, causal = ones.tril(-1), ones.tril()
    A_ab = (at_ @ bt_.transpose(-1, -2)).masked_fill(~strict, 0.0)  # (B, H, n, C, C)
    A_ak = (at_ @ kt_.transpose(-1, -2)).masked_fill(~strict, 0.0)
    eye = torch.eye(C, dtype=q.dtype, device=q.device)
    L = eye - A_ab  # unit lower-triangular
    rhs = torch.cat([A_ak @ vc, _weigh(ac, D("Gprev"))], dim=-1)  # solve for both right-hand sides at once
    sol = torch.linalg.solve_triangular(L, rhs, upper=False, unitriangular=True)
    U0, W = sol.split([v.shape[-1], a.shape[-1]], dim=-1)  # U = U0 + W S_0
    P_qb = (qt_ @ bt_.transpose(-1, -2)).masked_fill(~causal, 0.0)
    OV = (qt_ @ kt_.transpose(-1, -2)).masked_fill(~causal, 0.0) @ vc
    q0 = _weigh(qc, D("G"))
    b_end = _weigh(bc, D("end-G")).transpose(-1, -2)  # (B, H, n, dk, C)
    KV = _weigh(kc, D("end-G")).transpose(-1, -2) @ vc
    decay = torch.ones_like(KV[..., :1]) if g is None else D("end").exp()  # (B, H, n, dk, 1)
    S = _zero_state(q, v) if state is None else state
    outs = []
    per_chunk = (t.unbind(2) for t in (U0, W, q0, P_qb, OV, decay, b_end, KV))
    for U0_c, W_c, q0_c, P_qb_c, OV_c, decay_c, b_end_c, KV_c in zip(*per_chunk, strict=True):
        U = U0_c + W_c @ S  # (B, H, C, dv): u_t = S_{t-1}ᵀ a_t for the chunk's steps
        outs.append(q0_c @ S + P_qb_c @ U + OV_c)
        S = decay_c * S + b_end_c @ U + KV_c
    return torch.stack(outs, 2).flatten(2, 3)[:, :, :T], S


class _FusedDPLR(torch.autograd.Function):
    """The C++ loop (csrc/linear_recurrence.cpp) over q, k, a, b (B, H, T, d_k), v (B, H, T, d_v), g (B, H, T,
    1 or d_k) and S0 (B, H, d_k, d_v); a, b and g may be empty tensors (no low-rank term, no decay). It keeps
    the states at the starts of chunks of `chunk` steps for its backward, which recomputes the rest."""

    @staticmethod
    def forward(ctx: Any, ops: Any, chunk: int, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        o, S, marks = ops.dplr_forward(*tensors, chunk, True)
        ctx.ops, ctx.chunk = ops, chunk
        ctx.save_for_backward(*tensors[:6], marks)
        return o, S

    @staticmethod
    def backward(ctx: Any, do: torch.Tensor, dS: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        *inputs, marks = ctx.saved_tensors
        grads = ctx.ops.dplr_backward(do, dS, *inputs, marks, ctx.chunk)
        present = [t.numel() > 0 for t in inputs] + [True]  # empty a, b, g get no gradient
        return None, None, *(gr if p else None for gr, p in zip(grads, present, strict=True))


def dplr_fused(
    ops: Any,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    g: torch.Tensor | None = None,
    state: torch.Tensor | None = None,
    chunk: int = CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """dplr_recurrent's recurrence (gla_recurrent's with a = b = None) in the C++ loop; `chunk`: the steps
    between the states its backward keeps. Under torch.no_grad it keeps none."""
    empty = q.new_empty(0)
    S = _zero_state(q, v) if state is None else state
    if g is not None:  # the loop reads one decay per step: a broadcast one (RetNet's fixed decay) made whole
        g = g.expand(*q.shape[:3], g.shape[-1])
    tensors = tuple((empty if t is None else t).contiguous() for t in (q, k, v, a, b, g, S))
    if torch.is_grad_enabled():
        return _FusedDPLR.apply(ops, chunk, *tensors)
    o, S, _ = ops.dplr_forward(*tensors, chunk, False)
    return o, S


def chunked_or_fused(
    name: str,
    fast: bool,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    a: torch.Tensor | None,
    b: torch.Tensor | None,
    g: torch.Tensor | None,
    state: torch.Tensor | None,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole-sequence form of mixer `name`: the fused C++ loop where `fast` and it runs (a CPU tensor in
    float32 or float64, the extension built), else the chunked form (dplr_chunked, or gla_chunked for
    a = b = None). Notes which ran for the row's `kernels` column."""
    ops = None
    if fast and q.dtype in (torch.float32, torch.float64):
        ops = cpp_loops.ops_for(name, q.device)
    if ops is not None:
        return dplr_fused(ops, q, k, v, a, b, g, state, chunk)
    if a is None:
        return gla_chunked(q, k, v, g, state, chunk)
    return dplr_chunked(q, k, v, a, b, g, state, chunk)


# ---- what the mixers built on these recurrences share ----------------------------------------------------


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, heads·d) -> (B, heads, T, d)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, heads, T, d) -> (B, T, heads·d)."""
    return x.transpose(1, 2).flatten(2)


def check_options(
    name: str, form: str, chunk: int, heads: int, expand: int, implementation: str = "fast"
) -> None:
    if implementation not in ("fast", "reference"):
        raise OptionsError(f"{name}: implementation must be 'fast' or 'reference', got {implementation!r}.")
    if heads < 1 or expand < 1:
        raise OptionsError(f"{name}: heads and expand must be >= 1, got heads={heads}, expand={expand}.")
    forms = ("chunked", "recurrent")
    if form not in forms:
        raise OptionsError(f"{name}: form must be one of {', '.join(forms)}, got {form!r}.")
    if not 1 <= chunk <= 32:
        raise OptionsError(
            f"{name}: chunk must be in 1..32 (float32 range of the decay factors), got {chunk}."
        )


class TwoFormMixer(Mixer):
    """A backbone mixer (models/backbone.py) with a recurrent form (the specification) and a chunked form.

    Subclasses implement `_run(x, state, form) -> (y, state)` over (B, T, d), form "chunked" or
    "recurrent" (both batch the projections; "recurrent" loops over time inside the recurrence), and
    `initial_state`. `forward` runs the whole sequence in `self.form` (the option `form`: "chunked", the
    default, or "recurrent", to time one against the other), `scan` continues the chunked form from a state,
    `step` is one step of the recurrent form."""

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
