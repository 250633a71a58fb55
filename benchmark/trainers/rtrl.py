"""Real-time recurrent learning, exact (Williams & Zipser 1989, "A Learning Algorithm for Continually
Running Fully Recurrent Neural Networks", Neural Computation 1(2)).

The influence matrix M_t = ∂s_t/∂θ (state size S by parameter count P, one per sequence) is carried
forward with the state, so the gradient of the loss at step t is available at step t, with nothing stored
about the past:

    (h_t, s_t) = f(x_t, s_{t-1}; θ)                                   the model's `step`
    M_t      = ∂s_t/∂θ + (∂s_t/∂s_{t-1}) M_{t-1}                      (S, P)
    ∂ℓ_t/∂θ  = ∂ℓ_t/∂h_t · (∂h_t/∂θ + (∂h_t/∂s_{t-1}) M_{t-1})

θ covers the read-in (an embedding for token tasks) and the core; the read-out's gradient is ordinary
backprop at step t. The Jacobians come from `torch.func.jacrev` of the model's `step`, row by row under
`vmap`. Cost per step and sequence: the product (n+S)·S·P; for an n-unit RNN S = n, P ~ n², so O(n^4) time
and O(n^3) memory, against BPTT's O(n^2) per step and O(n·T) memory. Hence a width limit.

With no update inside the episode, the accumulated gradient is BPTT's exactly (tests: float64, 1e-10). A
learned initial state (the NTM's, the DNC's) starts M at its Jacobian ∂s_0/∂θ rather than zero.
Online (an update every step, the weights changing under the influence matrices) is Williams & Zipser's
real-time form; the influence matrices are not reset after an update, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from seqbench import stateful
from seqbench.stateful import State
from seqbench.tasks.base import Batch
from seqbench.trainers.segments import LossFn, Update, slice_batch


class Stepper(nn.Module):
    """Read-in then one step of the core, as one module (so `functional_call` can swap its parameters)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.read_in, self.core = net.read_in, net.core

    def forward(self, x_t: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        return self.core.step(self.read_in(x_t), state)

    def trainable(self) -> tuple[list[str], list[nn.Parameter]]:
        named = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        return [n for n, _ in named], [p for _, p in named]


def row_function(stepper: Stepper, names: list[str], like: State) -> Callable[..., torch.Tensor]:
    """f(params, x_t, s) for one sequence: (h_t, s_t) laid end to end as one vector (n + S,)."""

    def f(pvals: tuple[torch.Tensor, ...], x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        state = stateful.unflatten(s.unsqueeze(0), like)
        h, new = functional_call(stepper, dict(zip(names, pvals, strict=True)), (x.unsqueeze(0), state))
        return torch.cat([h.reshape(-1), stateful.flatten(tuple(new)).reshape(-1)])

    return f


def cost(net: nn.Module, batch_size: int, like: State) -> dict[str, float]:
    """What exact RTRL carries and computes per step at this width: floats of influence (the Jacobian and M),
    and multiply-adds in the influence update."""
    _, params = Stepper(net).trainable()
    P = sum(p.numel() for p in params)
    S = stateful.state_numel(like)
    n = net.read_out.in_features
    return {
        "params": P,
        "state": S,
        "influence_floats": batch_size * (n + 2 * S) * P,
        "flops_per_step": 2.0 * batch_size * (n + S) * S * P,
    }


def rtrl(
    net: nn.Module,
    batch: Batch,
    loss_fn: LossFn,
    carry: tuple[State, torch.Tensor] | None = None,
    update: Update | None = None,
    online: bool = True,
) -> tuple[float, tuple[State, torch.Tensor], int]:
    """Exact RTRL over one batch, from `carry` = (state, influence M (B, S, P)) or a fresh start.

    online: an update after every step with a scored position; else one at the batch's end. The gradient of
    each update is that of the task's loss over the scored positions since the previous one. With
    `update` None nothing is updated and `.grad` holds the gradient of the whole batch's loss.
    Returns (loss, (state, M) detached, updates)."""
    stepper = Stepper(net)
    names, params = stepper.trainable()
    x = batch.inputs
    B = batch.batch_size
    if carry is None:
        state = stateful.initial(net.core, B, x)
        M = initial_influence(net.core, params, x).expand(B, -1, -1).clone()
        state = stateful.detach(state)
        s = stateful.flatten(state)
    else:
        state, M = carry
        s = stateful.flatten(state)
    like = tuple(t[:1] for t in state)
    f = row_function(stepper, names, like)

    def f_aux(pv: tuple[torch.Tensor, ...], xi: torch.Tensor, si: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = f(pv, xi, si)
        return out, out

    jac = vmap(jacrev(f_aux, argnums=(0, 2), has_aux=True), (None, 0, 0))
    n = net.read_out.in_features
    acc = M.new_zeros(M.shape[2])  # Σ over rows and steps of ∂(summed loss)/∂θ since the last update
    pending = total = 0.0
    count = updates = 0
    for t, x_t in enumerate(x.unbind(1)):
        pvals = tuple(p.detach() for p in params)  # live storage: online updates are seen next step
        (j_theta, j_s), y = jac(pvals, x_t, s)
        J = torch.cat([j.reshape(B, n + s.shape[1], -1) for j in j_theta], dim=2)  # (B, n+S, P)
        D = torch.baddbmm(J, j_s, M)  # total derivative of (h_t, s_t) w.r.t. θ: (B, n+S, P)
        h, s, M = y[:, :n], y[:, n:], D[:, n:]
        seg = slice_batch(batch, t, t + 1)
        k = int(seg.mask.sum())
        if k:
            h_leaf = h.detach().requires_grad_(True)
            loss = loss_fn(net.read_out(h_leaf).unsqueeze(1), seg) * k  # summed over the scored positions
            loss.backward()  # the read-out's gradient (a sum) lands in .grad
            acc += torch.einsum("bn,bnp->p", h_leaf.grad, D[:, :n])
            pending, count, total = pending + k, count + k, total + loss.item()
            if online and update is not None:
                updates += flush(params, net.read_out, acc, pending, update)
                pending = 0
    if pending:
        updates += flush(params, net.read_out, acc, pending, update)
    return (
        (total / count if count else float("nan")),
        (stateful.unflatten(s.detach(), like), M.detach()),
        updates,
    )


def initial_influence(core: nn.Module, params: list[nn.Parameter], like: torch.Tensor) -> torch.Tensor:
    """M_0 = ∂s_0/∂θ (1, S, P): zero for a zero initial state; for a learned one (the NTM's memory bias, the
    DNC's controller state) its Jacobian, one batched backward, so that RTRL credits it as BPTT does."""
    s0 = stateful.flatten(stateful.initial(core, 1, like))  # (1, S)
    P = sum(p.numel() for p in params)
    if not s0.requires_grad:
        return s0.new_zeros(1, s0.shape[1], P)
    eye = torch.eye(s0.shape[1], dtype=s0.dtype, device=s0.device).unsqueeze(1)  # (S, 1, S)
    rows = torch.autograd.grad(s0, params, eye, is_grads_batched=True, allow_unused=True)
    cols = [
        torch.zeros(s0.shape[1], p.numel(), dtype=s0.dtype, device=s0.device)
        if r is None
        else r.reshape(s0.shape[1], -1)
        for r, p in zip(rows, params, strict=True)
    ]
    return torch.cat(cols, dim=1).unsqueeze(0)  # (1, S, P)


def flush(
    params: list[nn.Parameter],
    read_out: nn.Module,
    acc: torch.Tensor,
    pending: float,
    update: Callable[[], None] | None,
) -> int:
    """Write the mean of the `pending` accumulated gradients into `.grad` and, given an optimiser `update`,
    take the step and clear `acc`. Returns the updates made (0 or 1). Shared by RTRL and UORO."""
    _apply(params, read_out, acc, pending)
    if update is None:
        return 0
    update()
    acc.zero_()
    return 1


def _apply(params: list[nn.Parameter], read_out: nn.Module, acc: torch.Tensor, count: float) -> None:
    """Write the mean gradient (sums / count) into `.grad`: the core's from `acc`, the read-out's in place."""
    at = 0
    for p in params:
        g = acc[at : at + p.numel()].view_as(p) / count
        at += p.numel()
        p.grad = g.clone() if p.grad is None else p.grad + g
    for p in read_out.parameters():
        if p.grad is not None:
            p.grad /= count


def describe_cost(c: dict[str, Any], model: str, hidden: int, batch: int) -> str:
    gb = c["influence_floats"] * 4 / 1e9
    return (
        f"exact RTRL on {model} at hidden size {hidden}, batch {batch}: S = {c['state']} state floats and "
        f"P = {c['params']} parameters per sequence, so influence matrices of {c['influence_floats']:.3g} "
        f"floats ({gb:.2f} GB in float32) and {c['flops_per_step']:.3g} FLOPs per time step (O(n^4))"
    )
