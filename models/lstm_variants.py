"""Greff et al.'s LSTM variants on one shared cell (see `lstm_cell.py` for the equations and the fast path).

Greff, Srivastava, Koutník, Steunebrink & Schmidhuber 2017, "LSTM: A Search Space Odyssey", IEEE TNNLS
(arXiv:1503.04069). Registered names: lstm_peephole (their "vanilla"), lstm_nig, lstm_nfg, lstm_nog,
lstm_niaf, lstm_noaf, lstm_cifg, lstm_fgr, and lstm_1997 (Hochreiter & Schmidhuber 1997: no forget gate, no
peepholes). Their NP variant (no peepholes) is `lstm`, on PyTorch's fused kernel; `LSTMVariant` with
variant="np" is the same equations on this cell, which is how the cell is checked against `torch.nn.LSTM`.

Greff's finding: no variant beats vanilla significantly; removing the forget gate or the output activation
hurts most; CIFG and NP cost nothing.

Stateful protocol (`seqbench.stateful`): the state is (y, c), each (B, layers, H), and under FGR also the
previous step's gates [i, f, o] (B, layers, 3H), zero at the start, as `forward` assumes. `forward_state` runs
the fast recurrence from (y, c), which carries the gradient into and out of both; FGR's fast recurrence
neither takes nor returns the gate state, so under FGR (and with implementation="reference") it is a loop
over `step`. `step` writes the cell's equations (`lstm_cell._step`) with differentiable ops, for RTRL and UORO.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models.common import RecurrentInit, init_recurrent
from seqbench.models.lstm_cell import VARIANTS, _pad_gate_input, _split, _step, recurrence, reference_forward

State = tuple[torch.Tensor, ...]


class _Layer(nn.Module):
    def __init__(
        self, variant: str, input_size: int, hidden_size: int, forget_bias: float, recurrent_init: str
    ):
        super().__init__()
        v = VARIANTS[variant]
        self.v, self.H = v, hidden_size
        n = len(v.blocks())
        k = 1 / math.sqrt(hidden_size)  # PyTorch's LSTM initialisation
        self.weight_ih = nn.Parameter(torch.empty(n * hidden_size, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(n * hidden_size, hidden_size).uniform_(-k, k))
        self.bias = nn.Parameter(torch.empty(n * hidden_size).uniform_(-k, k))
        init_recurrent(self.weight_hh, hidden_size, recurrent_init)
        if v.has_f_weights:
            f = v.blocks().index("f")
            with torch.no_grad():
                self.bias[f * hidden_size : (f + 1) * hidden_size].fill_(forget_bias)
        # Peepholes only into gates that exist (CIFG's forget gate is 1 - i: no peephole of its own).
        self.peep_names = [g for g in ("i", "f", "o") if v.peepholes and g in v.blocks()]
        self.peepholes = nn.ParameterDict(
            {g: nn.Parameter(torch.empty(hidden_size).uniform_(-k, k)) for g in self.peep_names}
        )
        if v.gate_recurrence:  # i, f, o of the previous step into i, f, o (Variant requires all three)
            self.weight_gg = nn.Parameter(torch.empty(3 * hidden_size, 3 * hidden_size).uniform_(-k, k))
        else:
            self.register_parameter("weight_gg", None)

    def peep_all(self) -> torch.Tensor:
        zero = self.bias.new_zeros(self.H)
        return torch.stack([self.peepholes[g] if g in self.peep_names else zero for g in ("i", "f", "o")])

    def run(self, x: torch.Tensor, y0: torch.Tensor, c0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The fast recurrence from (y0, c0) (B, H) each: x (T, B, I) -> y (T, B, H) and the last c (B, H).
        Not for FGR, whose gate state the recurrence does not carry."""
        W, b, R, G, peep = self.weight_ih, self.bias, self.weight_hh, self.weight_gg, self.peep_all()
        ys, c = recurrence(self.v, x, W, b, R, G, peep, y0, c0)
        return ys.transpose(1, 2), c

    def step(
        self, x_t: torch.Tensor, y: torch.Tensor, c: torch.Tensor, g: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One step of the equations, x_t (B, I) -> (y, c, gates [i, f, o] under FGR else None)."""
        a = F.linear(x_t, self.weight_ih, self.bias) + F.linear(y, self.weight_hh)
        if g is not None:
            a = a + _pad_gate_input(F.linear(g, self.weight_gg))
        peep = dict(zip("ifo", self.peep_all(), strict=True))
        i, f, _, c, _, o, y = _step(self.v, _split(a, self.v.blocks()), c, peep)
        return y, c, (torch.cat([i, f, o], dim=-1) if g is not None else None)

    def forward(self, x: torch.Tensor, impl: str = "fast") -> torch.Tensor:  # x (T, B, I) -> (T, B, H)
        zeros = x.new_zeros(x.shape[1], self.H)
        W, b, R, G, peep = self.weight_ih, self.bias, self.weight_hh, self.weight_gg, self.peep_all()
        if impl == "fast":  # the input projection is inside, in the recurrence's layout
            return recurrence(self.v, x, W, b, R, G, peep, zeros, zeros)[0].transpose(1, 2)
        # The input projection W x + b of every step hoisted out of the loop, in (T, nH, B).
        xs = torch.baddbmm(b.unsqueeze(1), W.expand(x.shape[0], -1, -1), x.transpose(1, 2))
        peep_d = dict(zip("ifo", peep, strict=True))
        return reference_forward(self.v, xs.transpose(1, 2), R, G, peep_d, zeros, zeros)[0]


class LSTMVariant(nn.Module):
    """A stack of `num_layers` cells of one variant. `implementation`: "fast" (hand-written backward, the
    default) or "reference" (the equations through autograd step by step: slow, the oracle). A third,
    torch.compile of each step's element-wise work, measured slower than "fast" on the CPU here and was
    removed."""

    variant_name = "vanilla"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        forget_bias: float = 1.0,
        recurrent_init: RecurrentInit = "default",
        variant: str | None = None,
        implementation: Literal["fast", "reference"] = "fast",
    ) -> None:
        super().__init__()
        if variant is not None and type(self) is not LSTMVariant:
            raise OptionsError(
                f"{type(self).__name__} is the {self.variant_name!r} variant; `variant` is for LSTMVariant."
            )
        name = variant or self.variant_name
        if name not in VARIANTS:
            raise OptionsError(f"Unknown LSTM variant {name!r}. Available: {', '.join(VARIANTS)}.")
        if num_layers < 1:
            raise OptionsError(f"num_layers must be >= 1, got {num_layers}.")
        self.variant = name
        self.implementation = implementation
        self.layers = nn.ModuleList(
            _Layer(name, input_size if n == 0 else hidden_size, hidden_size, forget_bias, recurrent_init)
            for n in range(num_layers)
        )
        self.state_size = 2 * hidden_size * num_layers  # y and c per layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        h = x.transpose(0, 1)
        for layer in self.layers:
            h = layer(h, self.implementation)
        return h.transpose(0, 1)

    # -- the stateful protocol (seqbench.stateful) ----------------------------------------------------------
    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> State:
        w = self.layers[0].weight_hh
        H, L = w.shape[1], len(self.layers)
        z = torch.zeros(batch_size, L, H, device=device or w.device, dtype=dtype or w.dtype)
        gates = (torch.zeros(batch_size, L, 3 * H, device=z.device, dtype=z.dtype),)
        return (z, z.clone(), *(gates if VARIANTS[self.variant].gate_recurrence else ()))

    def step(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:  # (B, I) -> (B, H)
        ys, cs, gs = [], [], []
        inp = x_t
        for k, layer in enumerate(self.layers):
            g = state[2][:, k] if len(state) > 2 else None
            inp, c, g = layer.step(inp, state[0][:, k], state[1][:, k], g)
            ys.append(inp)
            cs.append(c)
            gs.append(g)
        new = (torch.stack(ys, 1), torch.stack(cs, 1))
        return inp, ((*new, torch.stack(gs, 1)) if len(state) > 2 else new)

    def forward_state(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        if len(state) > 2 or self.implementation != "fast":  # FGR, or the reference: a loop over step
            outs = []
            for x_t in x.unbind(1):  # unbind, not x[:, t] (PERF-NOTES)
                h, state = self.step(x_t, state)
                outs.append(h)
            return torch.stack(outs, 1), state
        h, ys, cs = x.transpose(0, 1), [], []
        for k, layer in enumerate(self.layers):
            h, c = layer.run(h, state[0][:, k], state[1][:, k])
            ys.append(h[-1])
            cs.append(c)
        return h.transpose(0, 1), (torch.stack(ys, 1), torch.stack(cs, 1))


def _named(variant: str, doc: str) -> type[LSTMVariant]:
    cls = type(f"LSTM_{variant}", (LSTMVariant,), {"variant_name": variant, "__doc__": doc})
    cls.__module__ = __name__
    return cls


LSTMPeephole = _named("vanilla", "Greff's vanilla LSTM: forget gate and peepholes.")
LSTMNIG = _named("nig", "No input gate (i = 1).")
LSTMNFG = _named("nfg", "No forget gate (f = 1): the cell never decays.")
LSTMNOG = _named("nog", "No output gate (o = 1).")
LSTMNIAF = _named("niaf", "No input activation function (z = W x + R y + b).")
LSTMNOAF = _named("noaf", "No output activation function (y = c ⊙ o).")
LSTMCIFG = _named("cifg", "Coupled input and forget gate (f = 1 - i).")
LSTMFGR = _named("fgr", "Full gate recurrence: the gates also read [i, f, o] of the previous step.")
LSTM1997 = _named("1997", "The original LSTM (Hochreiter & Schmidhuber 1997): no forget gate, no peepholes.")
