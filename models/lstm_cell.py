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

from dataclasses import dataclass

import torch


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
        """The pre-activation blocks with weights, in order: a subset of i, f, z, o."""
        return [
            b
            for b, on in (
                ("i", self.input_gate),
                ("f", self.has_f_weights),
                ("z", True),
                ("o", self.output_gate),
            )
            if on
        ]

    def gates(self) -> list[str]:
        """Gates fed back under full gate recurrence (those that exist as gates)."""
        return [g for g in ("i", "f", "o") if g in self.blocks() or (g == "f" and self.coupled)]


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
    names, gates = v.blocks(), v.gates()
    y, c = y0, c0
    g_prev = torch.zeros(y0.shape[0], len(gates) * y0.shape[1], dtype=y0.dtype, device=y0.device)
    ys = []
    for x_t in xp.unbind(0):
        a = x_t + y @ R.t()
        if v.gate_recurrence:
            a = a + _pad_gate_input(v, g_prev @ G.t())
        i, f, _, c, _, o, y = _step(v, _split(a, names), c, peep)
        if v.gate_recurrence:
            g_prev = torch.cat([{"i": i, "f": f, "o": o}[g] for g in gates], dim=-1)
        ys.append(y)
    return torch.stack(ys), c


def _pad_gate_input(v: Variant, gg: torch.Tensor) -> torch.Tensor:
    """Gate-recurrence input (B, len(blocks without z) * H) placed into the block layout (z gets none)."""
    names = v.blocks()
    targets = [n for n in names if n != "z"]
    parts = dict(zip(targets, gg.chunk(len(targets), dim=-1), strict=True))
    zero = torch.zeros_like(next(iter(parts.values())))
    return torch.cat([parts.get(n, zero) for n in names], dim=-1)


class _Recurrence(torch.autograd.Function):
    """y_1..T from pre-computed input projections; hand-written backward. Shapes: xp (T, B, nH), R (nH, H),
    G (mH, kH) or empty, peep (3, H), y0/c0 (B, H)."""

    @staticmethod
    def forward(ctx, v: Variant, xp, R, G, peep_all, y0, c0):
        names, gates = v.blocks(), v.gates()
        peep = {"i": peep_all[0], "f": peep_all[1], "o": peep_all[2]}
        T = xp.shape[0]
        y, c = y0, c0
        Rt = R.t()
        Gt = G.t() if v.gate_recurrence else None
        g_prev = xp.new_zeros(y0.shape[0], len(gates) * y0.shape[1]) if v.gate_recurrence else None
        keep = {k: [] for k in ("i", "f", "z", "c", "s", "o", "y_prev", "c_prev", "g_prev")}
        ys = []
        for t in range(T):
            a = torch.addmm(xp[t], y, Rt) if t else xp[t] + y @ Rt
            if v.gate_recurrence:
                a = a + _pad_gate_input(v, g_prev @ Gt)
            keep["y_prev"].append(y)
            keep["c_prev"].append(c)
            if v.gate_recurrence:
                keep["g_prev"].append(g_prev)
            i, f, z, c, s, o, y = _step(v, _split(a, names), c, peep)
            for k, val in (("i", i), ("f", f), ("z", z), ("c", c), ("s", s), ("o", o)):
                keep[k].append(val)
            if v.gate_recurrence:
                g_prev = torch.cat([{"i": i, "f": f, "o": o}[g] for g in gates], dim=-1)
            ys.append(y)
        ctx.v = v
        ctx.keep = keep
        ctx.save_for_backward(R, G, peep_all)
        return torch.stack(ys), c

    @staticmethod
    def backward(ctx, dys, dc_last):
        v, keep = ctx.v, ctx.keep
        R, G, peep_all = ctx.saved_tensors
        names, gates = v.blocks(), v.gates()
        T = dys.shape[0]
        dy_next = torch.zeros_like(dys[0])
        dc_next = dc_last.clone() if dc_last is not None else torch.zeros_like(dys[0])
        dg_next = None  # gradient into this step's gates from the next step's gate recurrence
        das = [None] * T
        dpeep_i = dpeep_f = dpeep_o = None
        for t in range(T - 1, -1, -1):
            i, f, z, s, o = keep["i"][t], keep["f"][t], keep["z"][t], keep["s"][t], keep["o"][t]
            c_prev = keep["c_prev"][t]
            dy = dys[t] + dy_next
            dgate = (
                dict(zip(gates, dg_next.chunk(len(gates), dim=-1), strict=True))
                if dg_next is not None
                else {}
            )
            da = {}
            # y = s * o
            ds = dy if o is None else dy * o
            dc = dc_next + (ds * (1 - s * s) if v.output_activation else ds)
            if o is not None:
                do = dy * s + dgate.get("o", 0)
                da["o"] = do * o * (1 - o)
                if v.peepholes:
                    dc = dc + da["o"] * peep_all[2]
            # c = z * i + f * c_prev
            dz = dc if i is None else dc * i
            da["z"] = dz * (1 - z * z) if v.input_activation else dz
            dc_prev = dc if f is None else dc * f
            if f is not None:
                df = dc * c_prev + dgate.get("f", 0)
            if i is not None:
                di = dc * z + dgate.get("i", 0)
                if v.coupled:
                    di = di - df  # f = 1 - i
                da["i"] = di * i * (1 - i)
            if v.has_f_weights:
                da["f"] = df * f * (1 - f)
            if v.peepholes:
                if "i" in da:
                    dc_prev = dc_prev + da["i"] * peep_all[0]
                if "f" in da:
                    dc_prev = dc_prev + da["f"] * peep_all[1]
            a_grad = torch.cat([da[n] for n in names], dim=-1)  # (B, nH)
            das[t] = a_grad
            dy_next = a_grad @ R
            dc_next = dc_prev
            if v.gate_recurrence:
                gate_blocks = [n for n in names if n != "z"]
                dgg = torch.cat([da[n] for n in gate_blocks], dim=-1)  # grads of the gate pre-activations
                dg_next = dgg @ G
        dA = torch.stack(das)  # (T, B, nH)
        H = dys.shape[-1]
        y_prev = torch.stack(keep["y_prev"])
        dR = dA.flatten(0, 1).t() @ y_prev.flatten(0, 1)
        dG = None
        if v.gate_recurrence:
            gate_blocks = [n for n in names if n != "z"]
            idx = [names.index(n) for n in gate_blocks]
            dAg = torch.cat([dA[..., k * H : (k + 1) * H] for k in idx], dim=-1)
            dG = dAg.flatten(0, 1).t() @ torch.stack(keep["g_prev"]).flatten(0, 1)
        dpeep = torch.zeros_like(peep_all)
        if v.peepholes:
            c_prev_all = torch.stack(keep["c_prev"])
            if "i" in names:
                dpeep_i = (dA[..., names.index("i") * H : (names.index("i") + 1) * H] * c_prev_all).sum(
                    (0, 1)
                )
                dpeep[0] = dpeep_i
            if "f" in names:
                dpeep_f = (dA[..., names.index("f") * H : (names.index("f") + 1) * H] * c_prev_all).sum(
                    (0, 1)
                )
                dpeep[1] = dpeep_f
            if "o" in names:
                c_all = torch.stack(keep["c"])
                dpeep_o = (dA[..., names.index("o") * H : (names.index("o") + 1) * H] * c_all).sum((0, 1))
                dpeep[2] = dpeep_o
        return None, dA, dR, dG, dpeep, dy_next, dc_next


def recurrence(v: Variant, xp, R, G, peep_all, y0, c0):
    """Fast path: (T, B, H) outputs and the last cell state."""
    return _Recurrence.apply(v, xp, R, G if G is not None else R.new_zeros(0), peep_all, y0, c0)
