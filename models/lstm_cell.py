"""One LSTM cell for all of Greff et al.'s variants, with a hand-written backward pass through time.

Greff, Srivastava, Koutník, Steunebrink & Schmidhuber 2017, "LSTM: A Search Space Odyssey" (arXiv:1503.04069).
The "vanilla" LSTM there has peepholes (p_i, p_f, p_o) and a forget gate:

    i = σ(W_i x_t + R_i y_{t-1} + p_i ⊙ c_{t-1} + b_i)        input gate
    f = σ(W_f x_t + R_f y_{t-1} + p_f ⊙ c_{t-1} + b_f)        forget gate
    z = g(W_z x_t + R_z y_{t-1} + b_z)                         block input, g = tanh
    c_t = z ⊙ i + f ⊙ c_{t-1}
    o = σ(W_o x_t + R_o y_{t-1} + p_o ⊙ c_t + b_o)            output gate (peeps at the new cell)
    y_t = h(c_t) ⊙ o                                           h = tanh

Each variant removes one thing: NIG i = 1, NFG f = 1, NOG o = 1, NIAF g = identity, NOAF h = identity,
NP no peepholes, CIFG f = 1 - i, FGR the gates also read the previous step's gates [i, f, o]_{t-1}
through a full matrix. The 1997 LSTM has neither forget gate nor peepholes. Removed gates have no weights.

Speed. A Python loop through autograd spends most of its time recording ~30 small ops per step. Here the
input projection W x + b is one matrix product over the whole sequence (outside the loop, through autograd),
and the recurrence is a `torch.autograd.Function` whose forward runs without recording and whose backward
is written out by hand: per step one matrix product and a dozen element-wise ops each way; the gradients of
R (and of the peepholes) are single products over all steps at the end. Checked against a plain autograd
implementation of the same equations (`reference_forward`) to float precision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from seqbench.models import cpp_loops


@dataclass(frozen=True)
class Variant:
    input_gate: bool = True
    forget_gate: bool = True
    output_gate: bool = True
    input_activation: bool = True  # g = tanh (False: identity, NIAF)
    output_activation: bool = True  # h = tanh (False: identity, NOAF)
    peepholes: bool = True
    coupled: bool = False  # CIFG: f = 1 - i (needs the input gate, has no forget-gate weights)
    gate_recurrence: bool = False  # FGR

    @property
    def has_f_weights(self) -> bool:
        return self.forget_gate and not self.coupled

    def blocks(self) -> list[str]:
        """The pre-activation blocks with weights, in memory order: the sigmoid gates first (i, f, o, those
        present), then z, so that the gates are one contiguous slice for the element-wise ops."""
        present = {"i": self.input_gate, "f": self.has_f_weights, "o": self.output_gate, "z": True}
        return [b for b in ("i", "f", "o", "z") if present[b]]

    def __post_init__(self) -> None:
        if self.coupled and not (self.input_gate and self.forget_gate):
            raise ValueError("CIFG couples the forget gate to the input gate: both must be on.")
        if self.gate_recurrence and self.blocks()[:3] != ["i", "f", "o"]:
            raise ValueError("FGR feeds all three gates back: it needs i, f and o with their own weights.")


VARIANTS = {
    "vanilla": Variant(),
    "nig": Variant(input_gate=False),
    "nfg": Variant(forget_gate=False),
    "nog": Variant(output_gate=False),
    "niaf": Variant(input_activation=False),
    "noaf": Variant(output_activation=False),
    "np": Variant(peepholes=False),
    "cifg": Variant(coupled=True),
    "fgr": Variant(gate_recurrence=True),
    "1997": Variant(forget_gate=False, peepholes=False),
}


def _split(a: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    return dict(zip(names, a.chunk(len(names), dim=-1), strict=True))


def _gate(
    a: dict[str, torch.Tensor], name: str, peep: torch.Tensor | None, cell: torch.Tensor
) -> torch.Tensor | None:
    """σ(a + p ⊙ c) for a gate that exists (None for a removed gate, which acts as 1)."""
    if name not in a:
        return None
    return torch.sigmoid(a[name] if peep is None else a[name] + peep * cell)


def _step(v: Variant, a: dict[str, torch.Tensor], c_prev: torch.Tensor, peep: dict[str, torch.Tensor]):
    """One step from pre-activations `a` (input and recurrent parts already added). Returns the gates
    (None where removed), z, c, h(c) and y."""
    p = peep if v.peepholes else {}
    i = _gate(a, "i", p.get("i"), c_prev)
    f = 1 - i if v.coupled else _gate(a, "f", p.get("f"), c_prev)
    z = torch.tanh(a["z"]) if v.input_activation else a["z"]
    c = (z if i is None else z * i) + (c_prev if f is None else f * c_prev)
    o = _gate(a, "o", p.get("o"), c)  # the output gate peeps at the new cell
    s = torch.tanh(c) if v.output_activation else c
    y = s if o is None else s * o
    return i, f, z, c, s, o, y


def reference_forward(
    v: Variant, xp: torch.Tensor, R: torch.Tensor, G: torch.Tensor | None, peep: dict, y0, c0
):
    """The equations, step by step through autograd: the oracle for the fast path. xp (T, B, nH)."""
    names = v.blocks()
    y, c = y0, c0
    g_prev = torch.zeros(y0.shape[0], 3 * y0.shape[1], dtype=y0.dtype, device=y0.device)
    ys = []
    for x_t in xp.unbind(0):
        a = x_t + y @ R.t()
        if v.gate_recurrence:
            a = a + _pad_gate_input(g_prev @ G.t())
        i, f, _, c, _, o, y = _step(v, _split(a, names), c, peep)
        if v.gate_recurrence:
            g_prev = torch.cat([i, f, o], dim=-1)  # FGR feeds back all three gates
        ys.append(y)
    return torch.stack(ys), c


def _pad_gate_input(gg: torch.Tensor) -> torch.Tensor:
    """Gate-recurrence input (B, 3H) for i, f, o placed into the block layout (z gets none)."""
    return torch.cat([gg, torch.zeros_like(gg[:, : gg.shape[1] // 3])], dim=-1)


def _dsigmoid_(grad: torch.Tensor, g: torch.Tensor) -> None:
    """grad *= σ'(a) = g (1 - g), in place, from the activation g = σ(a)."""
    grad.mul_(torch.addcmul(g, g, g, value=-1))


def _dtanh_(grad: torch.Tensor, t: torch.Tensor) -> None:
    """grad *= tanh'(a) = 1 - t^2, in place, from t = tanh(a)."""
    grad.sub_(grad * t * t)


def _flags(v: Variant) -> list[int]:
    """The variant as the C++ loops take it (models/csrc/recurrent_loops.cpp, struct Flags)."""
    return [
        int(x)
        for x in (
            v.input_gate,
            v.has_f_weights,
            v.output_gate,
            v.input_activation,
            v.output_activation,
            v.peepholes,
            v.coupled,
            v.gate_recurrence,
        )
    ]


def _peep_if(peep: torch.Tensor, v: Variant, H: int) -> torch.Tensor | None:
    """The peepholes of the gates that lead the layout (i and f, those present) as (n_if, H, 1)."""
    n_if = int(v.input_gate) + int(v.has_f_weights)
    first = 0 if v.input_gate else 1
    return peep[first : first + n_if].view(n_if, H, 1) if n_if else None


def forward_steps(gates, R, G, peep, ys, cs, ss, v: Variant) -> None:
    """The forward time loop in Python (the C++ `forward_steps` is the same calls in the same order).

    gates (T, nH, B) holds the input projections and is overwritten with the activated gates and z; ys and cs
    (T + 1, H, B) from their given step 0, and ss (T, H, B) with h(c) (a view of cs[1:] under NOAF)."""
    T, _, B = gates.shape
    H = R.shape[1]
    names = v.blocks()
    n_if = int(v.input_gate) + int(v.has_f_weights)  # i and f lead the layout
    blk = dict(zip(names, (b.unbind(0) for b in gates.view(T, len(names), H, B).unbind(1)), strict=True))
    gl, yl, cl, sl = gates.unbind(0), ys.unbind(0), cs.unbind(0), ss.unbind(0)
    pre_if = gates[:, : n_if * H].unbind(0) if n_if else None
    peep_if, peep_o = _peep_if(peep, v, H), peep[2].view(H, 1)
    sig_end = (n_if + int(v.output_gate)) * H if not v.peepholes else n_if * H  # sigmoid in one go
    for t in range(T):
        g, c_prev, c = gl[t], cl[t], cl[t + 1]
        g.addmm_(R, yl[t])
        if v.gate_recurrence and t:
            g[: 3 * H].addmm_(G, gl[t - 1][: 3 * H])
        if v.peepholes and n_if:
            pre_if[t].view(n_if, H, B).addcmul_(peep_if, c_prev)
        if sig_end:
            g[:sig_end].sigmoid_()
        z = blk["z"][t]
        if v.input_activation:
            z.tanh_()
        if v.has_f_weights:
            torch.mul(blk["f"][t], c_prev, out=c)
        elif v.coupled:
            torch.addcmul(c_prev, blk["i"][t], c_prev, value=-1, out=c)  # (1 - i) c_prev
        else:
            c.copy_(c_prev)
        if v.input_gate:
            c.addcmul_(z, blk["i"][t])
        else:
            c.add_(z)
        s_t = torch.tanh(c, out=sl[t]) if v.output_activation else c
        if v.output_gate:
            o = blk["o"][t]
            if v.peepholes:
                o.addcmul_(peep_o, c).sigmoid_()
            torch.mul(s_t, o, out=yl[t + 1])
        else:
            yl[t + 1].copy_(s_t)


def backward_steps(dys, dc, R, G, peep, gates, ys, cs, ss, dA, dR, dG, v: Variant) -> None:
    """The backward time loop in Python (the C++ `backward_steps` is the same calls in the same order).

    dys (T, H, B) gradients reaching the outputs; dc (H, B) the gradient reaching the last cell state,
    updated in place to that of the initial one. Fills dA (T, nH, B) with the pre-activation gradients
    and accumulates the recurrent weight gradients into dR (and dG under FGR)."""
    T, _, B = gates.shape
    H = R.shape[1]
    names = v.blocks()
    n_if = int(v.input_gate) + int(v.has_f_weights)
    blk = dict(zip(names, (b.unbind(0) for b in gates.view(T, len(names), H, B).unbind(1)), strict=True))
    dblk = dict(zip(names, (b.unbind(0) for b in dA.view(T, len(names), H, B).unbind(1)), strict=True))
    gl, dal, cl, sl, dyl, yl = (
        gates.unbind(0),
        dA.unbind(0),
        cs.unbind(0),
        ss.unbind(0),
        dys.unbind(0),
        ys.unbind(0),
    )
    peep_if, peep_o = _peep_if(peep, v, H), peep[2].view(H, 1)
    Rt = R.t()
    dy = gates.new_empty(H, B)
    dg_next = None  # gradient into this step's gate values from the next step's gate recurrence
    sig_end = n_if * H if v.peepholes or not v.output_gate else (n_if + 1) * H
    # Weight gradients accumulate step by step: measured faster here than one einsum over all steps,
    # which has to permute (T, nH, B) into a matrix first.
    for t in range(T - 1, -1, -1):
        da, c_prev, s_t = dal[t], cl[t], sl[t]
        if t == T - 1:
            dy.copy_(dyl[t])
        else:
            torch.addmm(dyl[t], Rt, dal[t + 1], out=dy)
        # y = s ⊙ o
        if v.output_gate:
            o, dao = blk["o"][t], dblk["o"][t]
            torch.mul(dy, s_t, out=dao)
            if dg_next is not None:
                dao.add_(dg_next[2 * H :])
            if v.peepholes:  # the cell gradient needs o's pre-activation gradient now
                _dsigmoid_(dao, o)
            ds = dy.mul_(o)
        else:
            ds = dy
        if v.output_activation:
            _dtanh_(ds, s_t)
        dc.add_(ds)
        if v.output_gate and v.peepholes:
            dc.addcmul_(dao, peep_o)
        # c = z ⊙ i + f ⊙ c_prev
        z, daz = blk["z"][t], dblk["z"][t]
        if v.input_gate:
            i, dai = blk["i"][t], dblk["i"][t]
            torch.mul(dc, i, out=daz)
            torch.mul(dc, z, out=dai)
            if dg_next is not None:
                dai.add_(dg_next[:H])
            if v.coupled:
                dai.addcmul_(dc, c_prev, value=-1)  # f = 1 - i
        else:
            daz.copy_(dc)
        if v.input_activation:
            _dtanh_(daz, z)
        if v.has_f_weights:
            torch.mul(dc, c_prev, out=dblk["f"][t])
            if dg_next is not None:
                dblk["f"][t].add_(dg_next[H : 2 * H])
        if sig_end:
            _dsigmoid_(da[:sig_end], gl[t][:sig_end])
        # dc_prev
        if v.has_f_weights:
            dc.mul_(blk["f"][t])
        elif v.coupled:
            dc.addcmul_(dc, blk["i"][t], value=-1)
        if v.peepholes and n_if:
            dc.add_((da[: n_if * H].view(n_if, H, B) * peep_if).sum(0))
        dR.addmm_(da, yl[t].t())
        if v.gate_recurrence and t:
            dg_next = G.t() @ da[: 3 * H]
            dG.addmm_(da[: 3 * H], gl[t - 1][: 3 * H].t())


def steps(device: torch.device) -> tuple[Callable[..., None], Callable[..., None]]:
    """(forward loop, backward loop) for tensors on `device`: the C++ ones on the CPU where they build
    (`cpp_loops`), else the Python ones (which run on any device)."""
    ops = cpp_loops.ops_for("lstm_cell", device)
    if ops is None:
        return forward_steps, backward_steps
    return (
        lambda *a, v: ops.forward_steps(*a, _flags(v)),
        lambda *a, v: ops.backward_steps(*a, _flags(v)),
    )


class _Recurrence(torch.autograd.Function):
    """One layer: y_1..T from the inputs x_1..T, with a hand-written backward.

    Shapes in: x (T, B, I); W (nH, I), b (nH) in block order i, f, o, z (those present); R (nH, H);
    G (3H, 3H) or empty; peep (3, H) rows i, f, o; y0, c0 (B, H). Out: y (T, H, B) and the last c (B, H).
    The input projections W x_t + b of all steps are one batched product before the loop, made straight
    in the (features, batch) layout, in the buffer that then holds the activated gates (measured at
    H = 128: F.linear and a transpose into this layout, and back for the gradient, cost ~20% of a step).
    In that layout each block is a contiguous row slice (transcendental ops on strided column slices
    measured 2.5x slower) and the recurrent product is R @ y, added in place. Every per-step view is made
    up front with one `unbind`; each step writes into preallocated buffers with in-place ops: about 10
    element-wise ops and one matrix product forward, about 20 and one backward. The time loops run in C++
    where the kernel builds (`steps`), with each step's element-wise work fused into one pass; else in Python.
    The two agree to float precision (a few ulp per step), not bit for bit."""

    @staticmethod
    def forward(ctx, v: Variant, x, W, b, R, G, peep, y0, c0):
        T, B, _ = x.shape
        H = R.shape[1]
        # activated gates and z per step, (T, nH, B); on entry the input projections
        gates = torch.baddbmm(b.unsqueeze(1), W.expand(T, -1, -1), x.transpose(1, 2))
        ys = x.new_empty(T + 1, H, B)
        cs = x.new_empty(T + 1, H, B)
        ss = x.new_empty(T, H, B) if v.output_activation else cs[1:]
        ys[0], cs[0] = y0.t(), c0.t()
        fwd, _ = steps(x.device)
        fwd(gates, R, G, peep, ys, cs, ss, v=v)
        ctx.v = v
        ctx.save_for_backward(x, W, R, G, peep, gates, ys, cs, ss)
        return ys[1:], cs[T].t()

    @staticmethod
    def backward(ctx, dys, dc_last):
        v = ctx.v
        x, W, R, G, peep, gates, ys, cs, ss = ctx.saved_tensors
        T, nH, B = gates.shape
        H = R.shape[1]
        dA = gates.new_empty(T, nH, B)
        dc = dc_last.t().contiguous() if dc_last is not None else gates.new_zeros(H, B)
        dR = torch.zeros_like(R)
        dG = torch.zeros_like(G)
        _, bwd = steps(gates.device)
        bwd(dys, dc, R, G, peep, gates, ys, cs, ss, dA, dR, dG, v=v)
        dpeep = torch.zeros_like(peep)
        if v.peepholes:
            col = {n: slice(k * H, (k + 1) * H) for k, n in enumerate(v.blocks())}
            for row, gate, cells in ((0, "i", cs[:-1]), (1, "f", cs[:-1]), (2, "o", cs[1:])):
                if gate in col:
                    dpeep[row] = (dA[:, col[gate]] * cells).sum((0, 2))
        dx = torch.matmul(W.t(), dA).transpose(1, 2) if ctx.needs_input_grad[1] else None
        dW = torch.tensordot(dA, x, dims=([0, 2], [0, 1]))  # one product over steps and batch
        db = dA.sum((0, 2))
        dy0 = (R.t() @ dA[0]).t()
        dG = dG if v.gate_recurrence else None
        return None, dx, dW, db, dR, dG, dpeep, dy0, dc.t()


def recurrence(v: Variant, x, W, b, R, G, peep_all, y0, c0):
    """Fast path: x (T, B, I) -> (T, H, B) outputs and the last cell state (B, H)."""
    return _Recurrence.apply(v, x, W, b, R, G if G is not None else R.new_zeros(0), peep_all, y0, c0)
