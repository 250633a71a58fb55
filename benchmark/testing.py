"""Contract checks a model or task author can call from their own tests; seqbench's built-ins pass them.

    from seqbench.testing import check_model, check_task

    def test_my_model():
        check_model(MyModel, my_option=3)

Each check raises `seqbench.errors.ContractError` (an AssertionError) with what broke, whatever Python's
flags: the checks are explicit, not `assert` statements, so `python -O` cannot switch them off. Models are
built exactly as the runner builds them (`seqbench.network.build_model`). Sizes are tiny: a check takes well
under a second.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from seqbench.errors import ContractError

__all__ = ["ContractError", "check_model", "check_stateful", "check_task"]


def _require(condition: Any, message: str) -> None:
    if not condition:
        raise ContractError(message)


def check_model(cls: type, input_size: int = 5, hidden_size: int = 8, **options: Any) -> None:
    """Shapes, causality, deterministic initialisation, gradients reaching every parameter, state size."""

    from seqbench.network import build_model, check_output

    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        return build_model(cls, input_size, hidden_size, options, f"model {cls.__name__}")

    model = build()
    x = torch.randn(3, 7, input_size)
    y = check_output(model(x), x, hidden_size, cls.__name__)
    y.pow(2).mean().backward()
    no_grad = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum())
    ]
    _require(not no_grad, f"{cls.__name__}: no gradient reaches {no_grad}")

    # Causal: changing the inputs after step t never changes the outputs up to t.
    model.eval()
    x = torch.randn(2, 9, input_size)
    t = 4
    x2 = x.clone()
    x2[:, t + 1 :] = torch.randn(2, 9 - t - 1, input_size) * 3
    with torch.no_grad():
        a, b = model(x), model(x2)
    _require(torch.allclose(a[:, : t + 1], b[:, : t + 1], atol=1e-6), f"{cls.__name__} looks ahead in time")
    _require(
        not torch.allclose(a[:, t + 1 :], b[:, t + 1 :]), f"{cls.__name__} ignores its input after step {t}"
    )

    again = build()
    for (name, p), (_, q) in zip(build().named_parameters(), again.named_parameters(), strict=True):
        _require(
            torch.equal(p, q), f"{cls.__name__}: parameter {name} differs between two seeded constructions"
        )
    state = getattr(model, "state_size", None)
    per_step = getattr(model, "state_per_step", 0)
    _require(
        state is None or (isinstance(state, int) and state >= 0),
        f"{cls.__name__}: state_size must be a non-negative int",
    )
    _require(
        isinstance(per_step, int) and per_step >= 0,
        f"{cls.__name__}: state_per_step must be a non-negative int",
    )
    _require(
        state is None or state + per_step > 0,
        f"{cls.__name__}: state_size or state_per_step must be positive",
    )


def check_stateful(
    cls: type, input_size: int = 5, hidden_size: int = 8, length: int = 9, **options: Any
) -> None:
    """The stateful protocol (seqbench.stateful), in float64: `initial_state` batch first; running two halves
    with the state carried equals running whole (outputs and final state, at every split point); a loop
    over `step`, where the model has one, equals `forward`; a state carried in changes what comes out."""
    from seqbench import stateful

    torch.manual_seed(0)
    model = cls(input_size, hidden_size, **options).double().eval()
    name = cls.__name__
    _require(stateful.is_stateful(model), f"{name}: lacks {', '.join(stateful.missing(model, 'segments'))}")
    B = 3
    x = torch.randn(B, length, input_size, dtype=torch.float64)
    s0 = stateful.initial(model, B, x)
    _require(
        isinstance(s0, tuple) and s0 and all(s.shape[0] == B for s in s0),
        f"{name}: initial_state must be a tuple of tensors, each batch first (B, ...)",
    )
    with torch.no_grad():
        whole = model(x)
        h, s_end = stateful.run_segment(model, x, s0)
        _require(torch.allclose(h, whole, atol=1e-10), f"{name}: forward_state from initial_state != forward")
        for t in (1, length // 2, length - 1):
            h1, s1 = stateful.run_segment(model, x[:, :t], stateful.initial(model, B, x))
            h2, s2 = stateful.run_segment(model, x[:, t:], s1)
            _require(
                torch.allclose(torch.cat([h1, h2], 1), whole, atol=1e-10),
                f"{name}: two halves split at step {t} with the state carried != the whole",
            )
            _require(
                all(torch.allclose(a, b, atol=1e-10) for a, b in zip(s2, s_end, strict=True)),
                f"{name}: the final state after two halves (split at {t}) != after the whole",
            )
        if callable(getattr(model, "step", None)):
            state, outs = stateful.initial(model, B, x), []
            for x_t in x.unbind(1):
                h_t, state = model.step(x_t, state)
                outs.append(h_t)
            _require(
                torch.allclose(torch.stack(outs, 1), whole, atol=1e-10),
                f"{name}: a loop over step != forward",
            )
            _require(
                all(torch.allclose(a, b, atol=1e-10) for a, b in zip(state, s_end, strict=True)),
                f"{name}: the state after a loop over step != forward_state's",
            )
        h_other, _ = stateful.run_segment(model, x[:, length // 2 :], s1)
        h_fresh, _ = stateful.run_segment(model, x[:, length // 2 :], stateful.initial(model, B, x))
        if length // 2 > 0:
            _require(not torch.allclose(h_other, h_fresh), f"{name}: ignores the state it is given")
    _check_stateful_gradients(model, x, whole, name)


def _check_stateful_gradients(model: Any, x: torch.Tensor, whole: torch.Tensor, name: str) -> None:
    """The gradients, of the input and of every parameter, in float64:
    - two halves with the state carried, not detached (truncated BPTT with k1 < k2 runs its windows so),
      equal one run: `forward` through the outputs, and one segment through the outputs and the final state;
    - from a carried state that needs no gradient (where a truncated-BPTT window starts), `forward_state`
      equals a loop over `step`, where the model has one: a fast path that assumes a zero start is caught."""
    from seqbench import stateful

    B, t = x.shape[0], x.shape[1] // 2
    g = torch.Generator().manual_seed(1)
    w = torch.randn(whole.shape, generator=g, dtype=whole.dtype)
    s_end = stateful.run_segment(model, x, stateful.initial(model, B, x))[1]
    v = [torch.randn(_real(a).shape, generator=g, dtype=_real(a).dtype) for a in s_end]

    def grads(run, x_in: torch.Tensor, w_out: torch.Tensor, with_state: bool) -> list[torch.Tensor]:
        model.zero_grad(set_to_none=True)
        xg = x_in.clone().requires_grad_(True)
        h, s = run(xg)
        loss = (h * w_out).sum()
        if with_state:
            loss = loss + sum((_real(a) * b).sum() for a, b in zip(s, v, strict=True))
        loss.backward()
        out = [xg.grad if xg.grad is not None else torch.zeros_like(xg)]
        return out + [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]

    def halves(xg):
        h1, s = stateful.run_segment(model, xg[:, :t], stateful.initial(model, B, xg))
        h2, s = stateful.run_segment(model, xg[:, t:], s)
        return torch.cat([h1, h2], 1), s

    def one_segment(xg):
        return stateful.run_segment(model, xg, stateful.initial(model, B, xg))

    checks = [
        (
            "two halves with the state carried",
            "forward",
            grads(lambda xg: (model(xg), ()), x, w, False),
            grads(halves, x, w, False),
        ),
        (
            "two halves with the state carried",
            "one segment (and its final state)",
            grads(one_segment, x, w, True),
            grads(halves, x, w, True),
        ),
    ]
    if callable(getattr(model, "step", None)):
        with torch.no_grad():
            s_mid = stateful.run_segment(model, x[:, :t], stateful.initial(model, B, x))[1]

        def by_step(xg):
            outs, state = [], s_mid
            for x_t in xg.unbind(1):
                h_t, state = model.step(x_t, state)
                outs.append(h_t)
            return torch.stack(outs, 1), state

        checks.append(
            (
                "forward_state from a carried state",
                "a loop over step",
                grads(by_step, x[:, t:], w[:, t:], True),
                grads(lambda xg: stateful.run_segment(model, xg, s_mid), x[:, t:], w[:, t:], True),
            )
        )
    names = ["the input", *(n for n, _ in model.named_parameters())]
    for what, against, ref, got in checks:
        for n, a, b in zip(names, ref, got, strict=True):
            _require(
                torch.allclose(a, b, atol=1e-9),
                f"{name}: the gradient of {n} through {what} != through {against}",
            )


def _real(a: torch.Tensor) -> torch.Tensor:
    """A complex state as its real and imaginary parts (a loss must be real)."""
    return torch.view_as_real(a) if a.is_complex() else a


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _check_read_positions(task: Any, name: str) -> None:
    """A task that names the steps its loss and metrics read (`read_positions`) scores random outputs at
    those steps, on the batch cut to them, exactly as on the whole sequence (the runner's sparse read-out)."""
    from seqbench.network import at_steps, cut_batch, scored_steps

    batch = task.sample(4, task.train_lengths[1], _generator(1))
    steps = scored_steps(task, batch, sparse=1.0)  # at any density, not only where the runner cuts
    if steps is None:
        return
    read = task.read_positions(batch)
    _require(
        read.shape == batch.mask.shape and read.dtype == torch.bool,
        f"{name}: read_positions must be a (B, T) bool like the mask",
    )
    _require(bool((read | ~batch.mask).all()), f"{name}: read_positions must hold every masked step")
    out = torch.randn(*batch.inputs.shape[:2], task.output_size, generator=_generator(2))
    cut, cut_out = cut_batch(batch, steps), at_steps(out, steps)
    full_loss, cut_loss = float(task.loss(out, batch)), float(task.loss(cut_out, cut))
    _require(
        math.isclose(full_loss, cut_loss, rel_tol=1e-5, abs_tol=1e-6),
        f"{name}: loss {cut_loss} at read_positions only, {full_loss} on the whole sequence",
    )
    full, part = task.metrics(out, batch), task.metrics(cut_out, cut)
    _require(
        full.keys() == part.keys()
        and all(math.isclose(full[k], part[k], rel_tol=1e-5, abs_tol=1e-6) for k in full),
        f"{name}: metrics {part} at read_positions only, {full} on the whole sequence",
    )


def check_task(cls_or_task: Any, **options: Any) -> None:
    """Batch shapes and mask, determinism under a seed, the length knob, every evaluation length (loss
    finite and differentiable, accuracy in [0, 1]), training-length sampling, a chance accuracy, and
    where the task names the steps it reads (`read_positions`), the same loss and metrics from those
    steps alone."""
    task = cls_or_task(**options) if isinstance(cls_or_task, type) else cls_or_task
    name = type(task).__name__
    length = task.train_lengths[1]
    batch = task.sample(4, length, _generator(0))
    B, T = batch.inputs.shape[:2]
    _require(B == 4, f"{name}: asked for 4 sequences, got {B}")
    if task.input_kind == "vector":
        _require(batch.inputs.shape == (4, T, task.input_size), f"{name}: inputs {tuple(batch.inputs.shape)}")
        _require(batch.inputs.dtype == torch.float32, f"{name}: vector inputs must be float32")
    else:
        _require(
            batch.inputs.dtype == torch.long and int(batch.inputs.max()) < task.input_size,
            f"{name}: token inputs must be long and below the vocabulary size",
        )
    _require(
        batch.mask.shape == (4, T) and batch.mask.dtype == torch.bool, f"{name}: mask must be (B, T) bool"
    )
    _require(batch.mask.any(), f"{name}: the mask is empty: the loss would look nowhere")
    _require(batch.targets.shape[:2] == (4, T), f"{name}: targets must be aligned on (B, T)")

    a = task.sample(3, task.train_lengths[0], _generator(7))
    b = task.sample(3, task.train_lengths[0], _generator(7))
    _require(
        all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("inputs", "targets", "mask")),
        f"{name}: the same generator seed gave different batches",
    )
    if getattr(task, "stochastic", True):
        # At the longest training length: at the shortest, some tasks have a single input (a 1-bit sum).
        a, c = (task.sample(3, task.train_lengths[1], _generator(seed)) for seed in (7, 8))
        _require(not torch.equal(a.inputs, c.inputs), f"{name}: different seeds gave the same batch")

    steps = [task.sample(2, n, _generator(0)).steps for n in sorted(set(task.eval_lengths))]
    _require(
        steps == sorted(steps) and steps[0] < steps[-1], f"{name}: longer lengths must give longer sequences"
    )
    _require(max(task.eval_lengths) > task.train_lengths[1], f"{name}: evaluate beyond the training lengths")
    _require(task.train_length in task.eval_lengths, f"{name}: evaluate at the training length too")
    for n in task.eval_lengths:
        eb = task.sample(2, n, _generator(0))
        out = torch.zeros(*eb.inputs.shape[:2], task.output_size, requires_grad=True)
        loss = task.loss(out, eb)
        loss.backward()
        _require(
            loss.dim() == 0 and math.isfinite(loss.item()),
            f"{name}: loss at length {n} is not a finite scalar",
        )
        acc = task.metrics(out.detach(), eb)["accuracy"]
        _require(0.0 <= acc <= 1.0, f"{name}: accuracy {acc} outside [0, 1] at length {n}")

    _check_read_positions(task, name)

    gen = _generator(0)
    lo, hi = task.train_lengths
    seen = {task.sample_length(gen) for _ in range(200)}
    _require(min(seen) >= lo and max(seen) <= hi, f"{name}: training lengths drawn outside {lo}..{hi}")
    chance = task.chance(task.train_length).get("accuracy")
    _require(
        chance is not None and 0.0 <= chance < 1.0, f"{name}: chance(length) must give an accuracy in [0, 1)"
    )
