"""Unbiased Online Recurrent Optimisation (Tallec & Ollivier 2018, "Unbiased Online Recurrent Optimization",
ICLR, arXiv:1702.05043).

RTRL's influence matrix M_t = ∂s_t/∂θ (S by P) is replaced by a rank-one estimate ũ_t θ̃_tᵀ that is
unbiased, E[ũ θ̃ᵀ] = M, for random signs ν (E[ν νᵀ] = I):

    ũ_t = ρ0 (∂s_t/∂s_{t-1}) ũ_{t-1} + ρ1 ν                       one forward-mode product (jvp)
    θ̃_t = θ̃_{t-1} / ρ0 + νᵀ (∂s_t/∂θ) / ρ1                         one reverse-mode product (vjp)
    ρ0 = sqrt(|θ̃_{t-1}| / |(∂s_t/∂s_{t-1}) ũ_{t-1}|),   ρ1 = sqrt(|νᵀ ∂s_t/∂θ| / |ν|)     (variance reduction)

and the gradient of the loss at step t, through h_t = first output of the model's `step`, is estimated as

    ∂ℓ_t/∂θ ≈ ∂ℓ_t/∂h_t · ((∂h_t/∂s_{t-1}) ũ_{t-1}) θ̃_{t-1}ᵀ + ∂ℓ_t/∂h_t · ∂h_t/∂θ     (a second vjp)

Cost per step: a few times one step of the model, O(n^2) for an n-unit RNN, and O(S + P) memory per
sequence. The estimate is exact on a one-step episode from a fresh state (M_0 = 0) and unbiased after that
(tests); its variance is the price, so it is compared against RTRL and BPTT on the same stream.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call, jvp, vjp, vmap

from seqbench import stateful
from seqbench.stateful import State
from seqbench.tasks.base import Batch
from seqbench.trainers.rtrl import Stepper, flush, row_function
from seqbench.trainers.segments import LossFn, Update, slice_batch

EPS = 1e-7


def generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def uoro(
    net: nn.Module,
    batch: Batch,
    loss_fn: LossFn,
    gen: torch.Generator,
    carry: tuple[State, torch.Tensor, torch.Tensor] | None = None,
    update: Update | None = None,
    online: bool = True,
) -> tuple[float, tuple[State, torch.Tensor, torch.Tensor], int]:
    """UORO over one batch, from `carry` = (state, ũ (B, S), θ̃ (B, P)) or a fresh start; the rest as
    `rtrl`. Returns (loss, carry detached, updates)."""
    stepper = Stepper(net)
    names, params = stepper.trainable()
    x, B = batch.inputs, batch.batch_size
    P = sum(p.numel() for p in params)
    if carry is None:
        state = stateful.initial(net.core, B, x)
        s = stateful.flatten(state)
        u, theta = s.new_zeros(s.shape), s.new_zeros(B, P)
    else:
        state, u, theta = carry
        s = stateful.flatten(state)
    like = tuple(t[:1] for t in state)
    f = row_function(stepper, names, like)
    n, S = net.read_out.in_features, s.shape[1]

    def row(pv, xi, si, ui, gi, nui):  # one sequence: the products UORO needs at this step
        y, Ju = jvp(lambda s_: f(pv, xi, s_), (si,), (ui,))
        _, back = vjp(lambda p_: f(p_, xi, si), pv)
        (g_theta,) = back(torch.cat([gi, gi.new_zeros(S)]))
        (nu_theta,) = back(torch.cat([nui.new_zeros(n), nui]))
        flat = lambda gs: torch.cat([t.reshape(-1) for t in gs])  # noqa: E731
        return y, Ju, flat(g_theta), flat(nu_theta)

    rows = vmap(row, (None, 0, 0, 0, 0, 0))
    acc = theta.new_zeros(P)
    pending = total = 0.0
    count = updates = 0
    for t, x_t in enumerate(x.unbind(1)):
        pvals = tuple(p.detach() for p in params)
        with torch.no_grad():
            h, _ = functional_call(
                stepper, dict(zip(names, pvals, strict=True)), (x_t, stateful.unflatten(s, like))
            )
        seg = slice_batch(batch, t, t + 1)
        k = int(seg.mask.sum())
        g = h.new_zeros(h.shape)
        if k:
            h_leaf = h.detach().requires_grad_(True)
            loss = loss_fn(net.read_out(h_leaf).unsqueeze(1), seg) * k
            loss.backward()
            g = h_leaf.grad
            pending, count, total = pending + k, count + k, total + loss.item()
        nu = torch.randint(0, 2, s.shape, generator=gen, device=s.device).to(s.dtype) * 2 - 1  # ±1
        y, Ju, g_theta, nu_theta = rows(pvals, x_t, s, u, g, nu)
        if k:  # ∂ℓ/∂h · (∂h/∂s ũ) θ̃ + ∂ℓ/∂h · ∂h/∂θ, summed over rows
            acc += ((g * Ju[:, :n]).sum(1, keepdim=True) * theta).sum(0) + g_theta.sum(0)
        Jsu = Ju[:, n:]
        rho0 = torch.sqrt(theta.norm(dim=1, keepdim=True) / (Jsu.norm(dim=1, keepdim=True) + EPS)) + EPS
        rho1 = torch.sqrt(nu_theta.norm(dim=1, keepdim=True) / (nu.norm(dim=1, keepdim=True) + EPS)) + EPS
        u, theta = rho0 * Jsu + rho1 * nu, theta / rho0 + nu_theta / rho1
        s = y[:, n:]
        if k and online and update is not None:
            updates += flush(params, net.read_out, acc, pending, update)
            pending = 0
    if pending:
        updates += flush(params, net.read_out, acc, pending, update)
    carry = (stateful.unflatten(s.detach(), like), u.detach(), theta.detach())
    return (total / count if count else float("nan")), carry, updates
