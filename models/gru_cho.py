"""GRU as Cho et al. wrote it (Cho et al. 2014, arXiv:1406.1078, eq. 5-8): the reset gate acts on the
previous state *before* the recurrent product.

    r = σ(W_r x + U_r h_{t-1} + b_r),  u = σ(W_u x + U_u h_{t-1} + b_u)
    n = tanh(W_n x + U_n (r ⊙ h_{t-1}) + b_n)
    h_t = u ⊙ h_{t-1} + (1 - u) ⊙ n

PyTorch's `nn.GRU` (registered as `gru`) computes n = tanh(W_n x + b_in + r ⊙ (U_n h_{t-1} + b_hn)) instead,
which lets all three recurrent products happen in one matrix multiply; here U_n must wait for r, so a step
costs two products. Parameters use nn.GRU's layout (gate order r, u(z), n), so weights copy across and the
two differ only where r sits (b_n = b_in + b_hn).

Each layer's recurrence is a `torch.autograd.Function` with a hand-written backward, in the (features, batch)
layout of the shared LSTM cell, and like it runs its time loops in C++ on the CPU (`csrc/recurrent_loops.cpp`, the
same extension, built on first use; `SEQBENCH_LSTM_KERNEL` chooses as there). The Python loops below are the
fallback and the specification; `implementation="reference"` runs the plain autograd loop they are tested
against. The input projections of all steps are one product before the loop.

Stateful protocol (`seqbench.stateful`): the state is (h,), (B, layers, H). `forward_state` runs the fast
recurrence from a given h_0 that needs no gradient (the state a truncated-BPTT window starts from is
detached, and so is a stream's); the loops send no gradient to h_0 (it is zero in `forward`), so a state that
needs one (windows chained with the gradient carried) runs the reference equations instead. `step` is the
reference equations for one step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from seqbench.errors import OptionsError
from seqbench.models import cpp_loops


def forward_steps(gates: torch.Tensor, U: torch.Tensor, hs: torch.Tensor, rhs: torch.Tensor) -> None:
    """The forward loop in Python (the C++ `gru_forward_steps` computes the same with two fused passes a step).

    (features, batch) layout. gates (T, 3H, B) holds the input projections with both biases (blocks r, u, n)
    and is overwritten with the activated gates; hs (T + 1, H, B) filled from its given step 0; rhs (T, H, B)
    gets r ⊙ h_{t-1}, the input of U_n (kept for U_n's gradient)."""
    H = U.shape[1]
    U_ru, U_n = U[: 2 * H], U[2 * H :]
    hl, rl = hs.unbind(0), rhs.unbind(0)
    for t, g in enumerate(gates.unbind(0)):
        h = hl[t]
        g[: 2 * H].addmm_(U_ru, h).sigmoid_()
        torch.mul(g[:H], h, out=rl[t])
        n, u = g[2 * H :].addmm_(U_n, rl[t]).tanh_(), g[H : 2 * H]
        torch.addcmul(n, u, h - n, out=hl[t + 1])


def backward_steps(
    dh_out: torch.Tensor, U: torch.Tensor, gates: torch.Tensor, hs: torch.Tensor, dA: torch.Tensor
) -> None:
    """The backward loop in Python (the C++ `gru_backward_steps` is the same with two fused passes a step).

    dh_out (T, H, B): the gradient reaching each h_t from outside the recurrence. Fills dA (T, 3H, B) with the
    gates' pre-activation gradients; the weight gradients are products over all steps, made by the caller."""
    T, _, B = gates.shape
    H = U.shape[1]
    U_rut, U_nt = U[: 2 * H].t(), U[2 * H :].t()
    gl, hl, dal, dhl = gates.unbind(0), hs.unbind(0), dA.unbind(0), dh_out.unbind(0)
    carry = gates.new_zeros(H, B)  # the gradient reaching h_t from step t + 1
    drh = gates.new_empty(H, B)
    for t in range(T - 1, -1, -1):
        g, da, h = gl[t], dal[t], hl[t]
        r, u, n = g[:H], g[H : 2 * H], g[2 * H :]
        dh = dhl[t] + carry
        torch.mul(dh, 1 - u, out=da[2 * H :]).mul_(1 - n * n)  # through tanh
        torch.mul(dh, h - n, out=da[H : 2 * H]).mul_(u * (1 - u))  # through σ
        torch.mul(dh, u, out=carry)
        torch.mm(U_nt, da[2 * H :], out=drh)  # reaching r ⊙ h_{t-1}
        torch.mul(drh, h, out=da[:H]).mul_(r * (1 - r))
        carry.addcmul_(drh, r)
        if t:  # h_0 is zero: nothing to send it
            carry.addmm_(U_rut, da[: 2 * H])


def steps(device: torch.device) -> tuple[Callable[..., None], Callable[..., None]]:
    """(forward loop, backward loop): the C++ ones on the CPU where they build (`cpp_loops`), else the
    Python ones above."""
    ops = cpp_loops.ops_for("gru_cho", device)
    return (forward_steps, backward_steps) if ops is None else (ops.gru_forward_steps, ops.gru_backward_steps)


class _ChoRecurrence(torch.autograd.Function):
    """One layer with a hand-written backward. In: x (T, B, I); W (3H, I), b_ih, b_hh (3H), U (3H, H) in
    nn.GRU's layout; h0 (B, H) or None (zero), which gets no gradient. Out: h (T, H, B)."""

    @staticmethod
    def forward(ctx, x, W, b_ih, b_hh, U, h0=None):
        T, B, _ = x.shape
        H = U.shape[1]
        if h0 is not None and h0.requires_grad:
            raise RuntimeError("gru_cho's fast recurrence sends no gradient to h0: run the reference with it")
        xs = torch.baddbmm((b_ih + b_hh).unsqueeze(1), W.expand(T, -1, -1), x.transpose(1, 2))  # (T, 3H, B)
        hs, rhs = x.new_zeros(T + 1, H, B), x.new_empty(T, H, B)
        if h0 is not None:
            hs[0] = h0.t()
        fwd, _ = steps(x.device)
        fwd(xs, U, hs, rhs)
        ctx.save_for_backward(x, W, U, xs, hs, rhs)
        return hs[1:]

    @staticmethod
    def backward(ctx, dh_out):
        x, W, U, xs, hs, rhs = ctx.saved_tensors
        H = U.shape[1]
        dA = torch.empty_like(xs)
        _, bwd = steps(xs.device)
        bwd(dh_out.contiguous(), U, xs, hs, dA)
        steps_and_batch = ([0, 2], [0, 2])  # the weight gradients: one product each over all steps
        dU = torch.cat(
            [
                torch.tensordot(dA[:, : 2 * H], hs[:-1], dims=steps_and_batch),
                torch.tensordot(dA[:, 2 * H :], rhs, dims=steps_and_batch),
            ]
        )
        dx = torch.matmul(W.t(), dA).transpose(1, 2) if ctx.needs_input_grad[0] else None
        dW = torch.tensordot(dA, x, dims=([0, 2], [0, 1]))
        db = dA.sum((0, 2))
        return dx, dW, db, db, dU, None


class _Layer(nn.Module):
    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        k, H = 1 / math.sqrt(hidden_size), hidden_size
        self.H = H
        self.weight_ih = nn.Parameter(torch.empty(3 * H, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(3 * H, H).uniform_(-k, k))
        self.bias_ih = nn.Parameter(torch.empty(3 * H).uniform_(-k, k))
        self.bias_hh = nn.Parameter(torch.empty(3 * H).uniform_(-k, k))

    def fast(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """x (T, B, I) -> h (T, H, B): the hand-written recurrence, from h0 (B, H) that needs no gradient."""
        return _ChoRecurrence.apply(x, self.weight_ih, self.bias_ih, self.bias_hh, self.weight_hh, h0)

    def cell(self, xp_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One step from the input projection xp_t = W x_t + b_ih (B, 3H) and h_{t-1} (B, H)."""
        H = self.H
        U_ru, U_n = self.weight_hh[: 2 * H], self.weight_hh[2 * H :]
        b_ru, b_n = self.bias_hh[: 2 * H], self.bias_hh[2 * H :]
        x_ru, x_n = xp_t[:, : 2 * H], xp_t[:, 2 * H :]
        r, u = torch.sigmoid(torch.addmm(x_ru + b_ru, h, U_ru.t())).chunk(2, dim=-1)
        n = torch.tanh(torch.addmm(x_n + b_n, r * h, U_n.t()))
        return n + u * (h - n)  # u ⊙ h + (1 - u) ⊙ n

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        """The reference: the equations step by step through autograd. x (T, B, I) -> h (T, B, H)."""
        xp = torch.nn.functional.linear(x, self.weight_ih, self.bias_ih)  # (T, B, 3H)
        h = x.new_zeros(x.shape[1], self.H) if h0 is None else h0
        out = []
        for xp_t in xp.unbind(0):  # unbind, not xp[t]: indexing makes backward quadratic in T
            h = self.cell(xp_t, h)
            out.append(h)
        return torch.stack(out)


class GRUCho(nn.Module):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        implementation: Literal["fast", "reference"] = "fast",
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise OptionsError(f"gru_cho: num_layers must be >= 1, got {num_layers}.")
        self.fast = implementation == "fast"
        self.layers = nn.ModuleList(
            _Layer(input_size if n == 0 else hidden_size, hidden_size) for n in range(num_layers)
        )
        self.state_size = hidden_size * num_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, I) -> (B, T, H)
        h = x.transpose(0, 1)
        if self.fast:  # layers pass h in the (T, H, B) layout of the loops
            for layer in self.layers:
                h = layer.fast(h).transpose(1, 2)
            return h.transpose(0, 1)
        for layer in self.layers:
            h = layer(h)
        return h.transpose(0, 1)

    # -- the stateful protocol (seqbench.stateful) ----------------------------------------------------------
    def initial_state(
        self, batch_size: int, device: torch.device | None = None, dtype: torch.dtype | None = None
    ) -> tuple[torch.Tensor, ...]:
        w = self.layers[0].weight_hh
        H, L = w.shape[1], len(self.layers)
        return (torch.zeros(batch_size, L, H, device=device or w.device, dtype=dtype or w.dtype),)

    def step(
        self, x_t: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:  # (B, I) -> (B, H)
        hs, inp = [], x_t
        for k, layer in enumerate(self.layers):
            inp = layer.cell(torch.nn.functional.linear(inp, layer.weight_ih, layer.bias_ih), state[0][:, k])
            hs.append(inp)
        return inp, (torch.stack(hs, 1),)

    def forward_state(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h, last = x.transpose(0, 1), []
        fast = self.fast and not state[0].requires_grad  # the loops send h0 no gradient
        for k, layer in enumerate(self.layers):
            h = layer.fast(h, state[0][:, k]).transpose(1, 2) if fast else layer(h, state[0][:, k])
            last.append(h[-1])
        return h.transpose(0, 1), (torch.stack(last, 1),)
