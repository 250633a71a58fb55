"""Clockwork RNN (Koutník, Greff, Gomez & Schmidhuber 2014, "A Clockwork RNN", arXiv:1402.3511).

The hidden units are split into g modules with periods T_1 < T_2 < ... (1, 2, 4, ... by default). At step t
(counted from 0) module i updates only if t mod T_i = 0; the others keep their state. The recurrent matrix
is block upper-triangular when modules are sorted by period: a module reads itself and the slower modules,
never the faster ones. Every module reads the input:

    h_t^(i) = tanh(W^(i) x_t + Σ_{j: T_j >= T_i} U^(i,j) h_{t-1}^(j) + b^(i))   if t mod T_i = 0
    h_t^(i) = h_{t-1}^(i)                                                   otherwise

Speed: when each period divides the next (the default powers of two) the modules due at step t are a
prefix of the sorted list, so a step computes only those rows; on average fewer than two modules update,
which is what makes the clockwork RNN cheaper than an Elman RNN of the same size on long sequences. That
path is a `torch.autograd.Function` with a hand-written backward, in a (features, batch) layout where the
due rows are one contiguous slice; it is checked against the plain autograd loop (`implementation=
"reference"`). Other periods fall back to that loop, computing every module and keeping the ones not due.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
from torch import nn

from seqbench.errors import OptionsError


class _PrefixRecurrence(torch.autograd.Function):
    """h_t[:end_t] = tanh(xp_t[:end_t] + U[:end_t] h_{t-1}); h_t[end_t:] = h_{t-1}[end_t:]. Shapes: xp (T, B, H),
    U (H, H) already masked; returns (T, B, H)."""

    @staticmethod
    def forward(ctx, xp, U, ends):
        T, B, H = xp.shape
        xs = xp.transpose(1, 2).contiguous().unbind(0)  # T x (H, B)
        hs = xp.new_zeros(T + 1, H, B)
        hl = hs.unbind(0)
        for t, end in enumerate(ends):
            h, h_prev = hl[t + 1], hl[t]
            torch.addmm(xs[t][:end], U[:end], h_prev, out=h[:end]).tanh_()
            if end < H:
                h[end:].copy_(h_prev[end:])
        ctx.ends = ends
        ctx.save_for_backward(U, hs)
        return hs[1:].transpose(1, 2)

    @staticmethod
    def backward(ctx, dys):
        U, hs = ctx.saved_tensors
        ends = ctx.ends
        T, H, B = hs.shape[0] - 1, hs.shape[1], hs.shape[2]
        dyl = dys.transpose(1, 2).contiguous().unbind(0)
        hl = hs.unbind(0)
        dA = hs.new_zeros(T, H, B)  # rows of modules not due stay zero
        dl = dA.unbind(0)
        dU = torch.zeros_like(U)
        carry = hs.new_zeros(H, B)  # gradient reaching h_t from later steps
        for t in range(T - 1, -1, -1):
            end = ends[t]
            carry.add_(dyl[t])
            da, h_new = dl[t][:end], hl[t + 1][:end]
            torch.mul(carry[:end], h_new, out=da).mul_(h_new)
            torch.sub(carry[:end], da, out=da)  # carry * (1 - h^2)
            dU[:end].addmm_(da, hl[t].t())
            carry[:end].zero_()  # rows that updated do not pass their gradient straight through ...
            carry.addmm_(U[:end].t(), da)  # ... it goes through U instead
        return dA.transpose(1, 2), dU, None


class _Layer(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, periods: tuple[int, ...]) -> None:
        super().__init__()
        g = len(periods)
        sizes = [hidden_size // g + (1 if i < hidden_size % g else 0) for i in range(g)]
        self.periods = periods
        self.bounds = [sum(sizes[: i + 1]) for i in range(g)]  # end of module i
        self.chain = all(b % a == 0 for a, b in itertools.pairwise(periods))
        k = 1 / math.sqrt(hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size).uniform_(-k, k))
        self.bias = nn.Parameter(torch.empty(hidden_size).uniform_(-k, k))
        module_of = torch.tensor([m for m, size in enumerate(sizes) for _ in range(size)])
        # Row module i reads column module j only if T_j >= T_i (j >= i once sorted).
        self.register_buffer(
            "block_mask", (module_of.unsqueeze(1) <= module_of.unsqueeze(0)).float(), persistent=False
        )
        # Each unit's module's period: a unit updates at step t when t mod its period is 0 (`cell`).
        self.register_buffer("unit_period", torch.tensor(periods)[module_of], persistent=False)

    def due(self, t: int) -> list[int]:
        return [i for i, p in enumerate(self.periods) if t % p == 0]

    def cell(self, x_t: torch.Tensor, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One step of every row at its own step count t (B,): the modules due there update, the rest keep
        their state. Written without data-dependent control flow (every module computed, then masked), so
        that it runs under `vmap` (RTRL, UORO)."""
        U = self.weight_hh * self.block_mask
        keep = (
            torch.remainder(t.long().unsqueeze(-1), self.unit_period) == 0
        )  # (B, H): each unit's module due
        new = torch.tanh(torch.nn.functional.linear(x_t, self.weight_ih, self.bias) + h @ U.t())
        return torch.where(keep, new, h)

    def forward(self, x: torch.Tensor, fast: bool = True) -> torch.Tensor:  # (T, B, I) -> (T, B, H)
        xp = torch.nn.functional.linear(x, self.weight_ih, self.bias)  # (T, B, H), hoisted
        U = self.weight_hh * self.block_mask
        if fast and self.chain:
            return _PrefixRecurrence.apply(xp, U, [self.bounds[self.due(t)[-1]] for t in range(x.shape[0])])
        h = x.new_zeros(x.shape[1], U.shape[0])
        out = []
        for t, xp_t in enumerate(xp.unbind(0)):
            due = self.due(t)
            if self.chain:  # modules due form a prefix: compute only those rows
                end = self.bounds[due[-1]]
                new = torch.tanh(torch.addmm(xp_t[:, :end], h, U[:end].t()))
                h = torch.cat([new, h[:, end:]], dim=1) if end < h.shape[1] else new
            else:
                keep = torch.zeros(h.shape[1], dtype=torch.bool, device=h.device)
                for i in due:
                    keep[(self.bounds[i - 1] if i else 0) : self.bounds[i]] = True
                h = torch.where(keep, torch.tanh(torch.addmm(xp_t, h, U.t())), h)
            out.append(h)
        return torch.stack(out)


class ClockworkRNN(nn.Module):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        modules: int = 8,
        periods: tuple[int, ...] | None = None,
        implementation: Literal["fast", "reference"] = "fast",
    ) -> None:
        super().__init__()
        periods = tuple(periods) if periods is not None else tuple(2**i for i in range(modules))
        if not periods or list(periods) != sorted(set(periods)) or periods[0] < 1:
            raise OptionsError(f"clockwork_rnn: periods must be distinct, ascending and >= 1, got {periods}.")
        if len(periods) > hidden_size:
            raise OptionsError(f"clockwork_rnn: {len(periods)} modules need hidden_size >= {len(periods)}.")
        self.periods = periods
        self.fast = implementation == "fast"
        self.layers = nn.ModuleList(
            _Layer(input_size if n == 0 else hidden_size, hidden_size, periods) for n in range(num_layers)
        )
        self.state_size = hidden_size * num_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        h = x.transpose(0, 1)
        for layer in self.layers:
            h = layer(h, self.fast)
        return h.transpose(0, 1)

    # The stateful protocol (seqbench.stateful): the state is every layer's h (B, H), then the step count t
    # (B,), which decides the modules due. `step` computes every module and keeps the ones not due
    # (`_Layer.cell`); segments are a loop over it (`stateful.run_segment`); `forward`'s fast path starts at
    # t = 0 from h = 0.

    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, ...]:
        """h = 0 in every layer, at step 0."""
        w = self.layers[0].weight_hh
        device, dtype = device or w.device, dtype or w.dtype
        H = w.shape[0]
        hs = tuple(torch.zeros(batch_size, H, device=device, dtype=dtype) for _ in self.layers)
        return (*hs, torch.zeros(batch_size, device=device, dtype=dtype))

    def step(
        self, x_t: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One step, x_t (B, I) -> h_t (B, H) of the last layer, and the state after it."""
        *hs, t = state
        out, inp = [], x_t
        for layer, h in zip(self.layers, hs, strict=True):
            inp = layer.cell(inp, h, t)
            out.append(inp)
        return inp, (*out, t + 1)
