"""The shared LSTM cell with each step's element-wise work fused by torch.compile (opt-in: `compile=True`).

Per step the recurrence needs one matrix product (left eager: it already runs near the CPU's limit) and a
dozen element-wise ops forward, about twenty backward, each a separate kernel call in eager mode. Here the
element-wise part of a step is one function of (pre-activations, previous cell) forward and one of
(gradients, saved activations) backward, compiled once per variant by inductor into a single fused kernel.
The equations are `lstm_cell._step` itself and its derivative written out below; both are checked against
the autograd oracle. Compilation takes seconds to tens of seconds on first use (cached on disk after).

Measured on the 2-core CPU this was developed on (benchmarks/recurrent_speed.py --compiled, H 128, T 100):
slower than the eager hand-written path (peephole LSTM 117 ms against 91 ms per step of batch 32): the
per-call cost of the compiled functions outweighs the fused kernels at these sizes. It stays an option for
devices where kernel launches dominate (a GPU: not measured yet), never the default. If compilation fails (no C++ compiler, an unsupported
platform), the eager hand-written path takes over with a warning.
"""

from __future__ import annotations

import functools
import types
import warnings

import torch

from seqbench.models.lstm_cell import Variant, _Recurrence, _step


def _forward_pointwise(a: torch.Tensor, c_prev: torch.Tensor, peep: torch.Tensor, v: Variant):
    """a (nH, B) pre-activations, c_prev (H, B), peep (3, H, 1) -> activated blocks (nH, B), c, h(c), y."""
    names, H = v.blocks(), c_prev.shape[0]
    i, f, z, c, s, o, y = _step(
        v, dict(zip(names, a.split(H), strict=True)), c_prev, dict(zip("ifo", peep, strict=True))
    )
    blocks = {"i": i, "f": f, "o": o, "z": z}
    return torch.cat([blocks[n] for n in names]), c, s, y


def _backward_pointwise(dy, dc, dg, act, c_prev, s, peep, v: Variant):
    """Gradients of one step: dy, dc (H, B) reaching y_t and c_t; dg (3H, B) reaching the gate values from
    the next step's gate recurrence. Returns the pre-activation gradients (nH, B) and dc_{t-1}."""
    names, H = v.blocks(), dy.shape[0]
    g = dict(zip(names, act.split(H), strict=True))
    i, o, z = g.get("i"), g.get("o"), g["z"]
    f = 1 - i if v.coupled else g.get("f")
    dgi, dgf, dgo = dg.split(H) if v.gate_recurrence else (0.0, 0.0, 0.0)
    da = {}
    if o is not None:
        da["o"] = (dy * s + dgo) * o * (1 - o)
        ds = dy * o
    else:
        ds = dy
    dc = dc + (ds * (1 - s * s) if v.output_activation else ds)
    if o is not None and v.peepholes:
        dc = dc + da["o"] * peep[2]
    da["z"] = (dc if i is None else dc * i) * ((1 - z * z) if v.input_activation else 1.0)
    df = dc * c_prev + dgf if f is not None else None
    if i is not None:
        di = dc * z + dgi
        if v.coupled:
            di = di - df  # f = 1 - i
        da["i"] = di * i * (1 - i)
    if v.has_f_weights:
        da["f"] = df * f * (1 - f)
    dc_prev = dc if f is None else dc * f
    if v.peepholes:
        for k, gate in enumerate("if"):
            if gate in da:
                dc_prev = dc_prev + da[gate] * peep[k]
    return torch.cat([da[n] for n in names]), dc_prev


def _own_code(fn, v: Variant):
    """`fn` with `v` bound as the default of its last argument, on a copy of its code object. dynamo keeps
    compiled versions per code object (8 by default): variants sharing one would evict each other and fail
    under fullgraph. (A functools.partial does not help: torch.compile wraps it in one shared function.)"""
    tag = "_".join(f"{k}{int(x)}" for k, x in sorted(vars(v).items()))
    code = fn.__code__.replace(co_name=f"{fn.__name__}__{tag}")
    return types.FunctionType(code, fn.__globals__, code.co_name, (v,), fn.__closure__)


@functools.cache
def _compiled(v: Variant):
    fwd = torch.compile(_own_code(_forward_pointwise, v), dynamic=True, fullgraph=True)
    bwd = torch.compile(_own_code(_backward_pointwise, v), dynamic=True, fullgraph=True)
    return fwd, bwd


class _FusedRecurrence(torch.autograd.Function):
    """Same contract as `lstm_cell._Recurrence`; element-wise work per step in one compiled call."""

    @staticmethod
    def forward(ctx, v: Variant, xs, R, G, peep, y0, c0):
        fwd, _ = _compiled(v)
        H = R.shape[1]
        peep3 = peep.unsqueeze(-1)  # (3, H, 1): broadcasts over the batch columns
        ys, cs, ss, acts = [y0.t().contiguous()], [c0.t().contiguous()], [], []
        for t, x_t in enumerate(xs.unbind(0)):  # x_t (nH, B)
            a = torch.addmm(x_t, R, ys[-1])
            if v.gate_recurrence and t:
                a[: 3 * H].addmm_(G, acts[-1][: 3 * H])
            act, c, s, y = fwd(a, cs[-1], peep3)
            acts.append(act)
            cs.append(c)
            ss.append(s)
            ys.append(y)
        ctx.v = v
        ctx.lists = (acts, cs, ss, ys)
        ctx.save_for_backward(R, G, peep)
        return torch.stack(ys[1:]), cs[-1].t()

    @staticmethod
    def backward(ctx, dys, dc_last):
        v = ctx.v
        _, bwd = _compiled(v)
        acts, cs, ss, ys = ctx.lists
        R, G, peep = ctx.saved_tensors
        H, T = R.shape[1], len(acts)
        peep3 = peep.unsqueeze(-1)
        dyl = dys.unbind(0)
        Rt = R.t().contiguous()
        dR = torch.zeros_like(R)
        dG = torch.zeros_like(G) if v.gate_recurrence else None
        dc = dc_last.t().contiguous()
        dg = dc.new_zeros(3 * H, dc.shape[1])
        dA: list[torch.Tensor] = [None] * T  # type: ignore[list-item]
        for t in range(T - 1, -1, -1):
            dy = dyl[t] if t == T - 1 else torch.addmm(dyl[t], Rt, dA[t + 1])
            da, dc = bwd(dy, dc, dg, acts[t], cs[t], ss[t], peep3)
            dR.addmm_(da, ys[t].t())
            if v.gate_recurrence and t:
                dg = G.t() @ da[: 3 * H]
                dG.addmm_(da[: 3 * H], acts[t - 1][: 3 * H].t())
            dA[t] = da
        dAs = torch.stack(dA)  # (T, nH, B)
        dpeep = torch.zeros_like(peep)
        if v.peepholes:
            names = v.blocks()
            cells = torch.stack(cs)
            for row, gate, cell in ((0, "i", cells[:-1]), (1, "f", cells[:-1]), (2, "o", cells[1:])):
                if gate in names:
                    k = names.index(gate)
                    dpeep[row] = (dAs[:, k * H : (k + 1) * H] * cell).sum((0, 2))
        return None, dAs, dR, dG, dpeep, (Rt @ dA[0]).t(), dc.t()


_ready: dict[Variant, bool] = {}


def _compiles(v: Variant) -> bool:
    """Compile both directions on a tiny problem once per variant; False (with a warning) if that fails,
    so that a failure never surfaces later inside someone's backward pass."""
    if v not in _ready:
        try:
            H, B, T = 3, 2, 2
            n = len(v.blocks())
            args = [
                torch.randn(T, n * H, B),
                torch.randn(n * H, H),
                torch.randn(3 * H, 3 * H),
                torch.randn(3, H),
            ]
            args = [a.requires_grad_() for a in args]
            y, c = _FusedRecurrence.apply(v, *args, torch.zeros(B, H), torch.zeros(B, H))
            (y.sum() + c.sum()).backward()
            _ready[v] = True
        except Exception as exc:  # inductor needs a working C++ toolchain; never let that break a run
            _ready[v] = False
            warnings.warn(
                f"torch.compile of the LSTM cell failed ({type(exc).__name__}: {exc}); using the eager path.",
                RuntimeWarning,
                stacklevel=3,
            )
    return _ready[v]


def fused_recurrence(v: Variant, xs, R, G, peep, y0, c0):
    """The compiled path, or the eager hand-written one where compilation does not work."""
    G = G if G is not None else R.new_zeros(0)
    fn = _FusedRecurrence if _compiles(v) else _Recurrence
    return fn.apply(v, xs, R, G, peep, y0, c0)
