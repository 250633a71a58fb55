"""Backpropagation through time, whole (BPTT) and truncated (Williams & Peng's BPTT(k2; k1)).

Williams & Peng 1990, "An Efficient Gradient-Based Algorithm for On-Line Training of Recurrent Network
Trajectories", Neural Computation 2(4). Every k1 steps (an update time τ), the losses of the last k1 steps
are backpropagated through the last k2 steps (k1 <= k2), and the weights are updated:

    ∇ = ∂/∂θ  Σ_{t=τ-k1+1..τ} ℓ_t(θ; s_{τ-k2})        s_{τ-k2} held constant (detached)

so the loss at τ reaches back exactly k2 steps, the loss at τ-k1+1 reaches k2-k1+1, and nothing earlier
than τ-k2 gets any credit. k1 = k2 is the common non-overlapping form (one backward per segment); k1 < k2
recomputes the k2-k1 steps the windows share, from the state stored where the next window starts.
With k1 = k2 >= T, one window covers the episode: plain BPTT.

Every update's loss is the task's loss over the scored positions since the previous update (a mean, as the
task defines it), so an update's size does not depend on how the episode was cut.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from torch import nn

from seqbench import stateful
from seqbench.stateful import State
from seqbench.tasks.base import Batch

LossFn = Callable[[torch.Tensor, Batch], torch.Tensor]
Update = Callable[[], None]


def slice_batch(batch: Batch, start: int, stop: int) -> Batch:
    """Steps start..stop-1 of every sequence (targets and mask are aligned on time)."""
    return Batch(batch.inputs[:, start:stop], batch.targets[:, start:stop], batch.mask[:, start:stop])


def bptt(
    net: nn.Module, batch: Batch, loss_fn: LossFn, state: State | None = None, update: Update | None = None
) -> tuple[float, State | None]:
    """One backward pass through the whole batch. Without `state` the plain `forward` (any model); with it,
    the segment runs from `state` (streams) and the final state comes back detached.

    Returns (loss, final state or None). The gradient is left in `.grad` when `update` is None."""
    if state is None:
        out, final = net(batch.inputs), None
    else:
        h, final = stateful.run_segment(net.core, net.read_in(batch.inputs), state)
        out, final = net.read_out(h), stateful.detach(final)
    loss = loss_fn(out, batch)
    loss.backward()
    if update is not None:
        update()
    return loss.item(), final


def update_times(steps: int, k1: int) -> list[int]:
    """Every k1-th step, and the episode's end."""
    return [*range(k1, steps, k1), steps]


def tbptt(
    net: nn.Module,
    batch: Batch,
    loss_fn: LossFn,
    k1: int,
    k2: int,
    state: State | None = None,
    update: Update | None = None,
) -> tuple[float, State, int]:
    """Truncated BPTT(k2; k1) over one batch, from `state` (default: the model's initial state).

    `update` is called after each window's backward (clip, optimiser step, zero the gradients); with None
    the windows' gradients add up in `.grad`. Returns (loss over every scored position, the final state
    detached, number of updates)."""
    if not 1 <= k1 <= k2:
        raise ValueError(f"tbptt needs 1 <= k1 <= k2, got k1={k1}, k2={k2}")
    core, x = net.core, batch.inputs
    fresh = state is None  # the model's own initial state, which may be learned (the NTM's): not detached
    if fresh:
        state = stateful.initial(core, batch.batch_size, x)
    saved: dict[int, State] = {0: state if fresh else stateful.detach(state)}  # where windows start
    ends = update_times(batch.steps, k1)
    prev, total, count, updates = 0, 0.0, 0, 0
    for i, tau in enumerate(ends):
        start = max(0, tau - k2)
        s = saved.pop(start)
        if fresh and start == 0 and i:  # a window from step 0 again: a fresh graph to the initial state
            s = stateful.initial(core, batch.batch_size, x)
        nxt = max(0, ends[i + 1] - k2) if i + 1 < len(ends) else None  # where the next window starts
        if nxt == start:
            saved[nxt] = s
        cuts = sorted({start, tau} | ({nxt} if nxt is not None and start < nxt <= tau else set()))
        hs = []
        for a, b in itertools.pairwise(cuts):
            h, s = stateful.run_segment(core, net.read_in(x[:, a:b]), s)
            hs.append(h)
            if b == nxt:
                saved[nxt] = stateful.detach(s)
        out = net.read_out(torch.cat(hs, dim=1)[:, prev - start :])  # the losses of steps prev..tau-1
        seg = slice_batch(batch, prev, tau)
        n = int(seg.mask.sum())
        if n:
            loss = loss_fn(out, seg)
            loss.backward()
            total, count = total + loss.item() * n, count + n
            updates += 1
            if update is not None:
                update()
        state, prev = stateful.detach(s), tau
    return (total / count if count else float("nan")), state, updates
