"""Public loading API and the network the runner trains: read-in -> core model -> read-out."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seqbench.errors import ContractError, OptionsError
from seqbench.options import validate_options
from seqbench.registry import MODELS, TASKS
from seqbench.tasks.base import Batch

#: How seqbench calls every model's constructor (built-ins and plugins alike).
MODEL_SIGNATURE = "(input_size, hidden_size, **options)"


def load_task(name: str, **options: Any) -> Any:
    """Build a registered task from its options (validated against its constructor)."""
    cls = TASKS.get(name)
    return cls(**validate_options(cls, options, f"task {name!r}"))


def check_model_signature(cls: type) -> None:
    """The constructor must take `input_size` and `hidden_size` first: seqbench passes them by name to
    options it checks and positionally to the constructor, so `(n_in, n_hidden)` would pass a positional
    smoke test and then fail every run."""
    import inspect

    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]
    names = [p.name for p in params[:2]]
    if names != ["input_size", "hidden_size"] and not any(p.kind is p.VAR_POSITIONAL for p in params[:1]):
        got = ", ".join(p.name for p in params) or "nothing"
        raise ContractError(
            f"{cls.__name__}.__init__ takes ({got}); a seqbench model's constructor must be "
            f"{MODEL_SIGNATURE}: rename the first two parameters input_size and hidden_size."
        )


def build_model(
    cls: type, input_size: int, hidden_size: int, options: dict[str, Any], what: str
) -> nn.Module:
    """Build a model class exactly as the runner does: signature checked, options validated, then
    `cls(input_size, hidden_size, **options)`. `seqbench.testing.check_model` builds through this too."""
    check_model_signature(cls)
    return cls(input_size, hidden_size, **validate_options(cls, options, what))


def load_model(name: str, input_size: int, hidden_size: int, **options: Any) -> nn.Module:
    """Build a registered model: a module mapping (batch, time, input_size) to (batch, time, hidden_size)."""
    return build_model(MODELS.get(name), input_size, hidden_size, options, f"model {name!r}")


def check_output(h: Any, x: torch.Tensor, hidden_size: int, name: str) -> torch.Tensor:
    """A model's forward must return one tensor (batch, time, hidden_size); say exactly what it did instead."""
    if isinstance(h, tuple | list):
        raise ContractError(
            f"{name}.forward must return one tensor (batch, time, hidden_size); got a {type(h).__name__} "
            f"of {len(h)} — return only the output (keep the state inside the model)."
        )
    if not isinstance(h, torch.Tensor):
        raise ContractError(
            f"{name}.forward must return one tensor (batch, time, hidden_size); got {type(h).__name__}."
        )
    expected = (x.shape[0], x.shape[1], hidden_size)
    if tuple(h.shape) != expected:
        raise ContractError(
            f"{name}.forward returned an output of shape {tuple(h.shape)}; the contract is (batch, time, hidden_size) = "
            f"{expected}."
        )
    return h


class SequenceNetwork(nn.Module):
    """Embedding (token tasks) or identity (vector tasks), then the core, then a linear read-out."""

    def __init__(self, task: Any, core: nn.Module, hidden_size: int) -> None:
        super().__init__()
        tokens = task.input_kind == "tokens"
        self.read_in = nn.Embedding(task.input_size, hidden_size) if tokens else nn.Identity()
        self.core = core
        self.read_out = nn.Linear(hidden_size, task.output_size)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs (batch, time, output_size); with `positions` (batch, K) step indices, the read-out at
        those steps only, (batch, K, output_size) (`scored_forward`)."""
        h = self.core(self.read_in(x))
        check_output(h, x, self.read_out.in_features, type(self.core).__name__)
        return self.read_out(h if positions is None else at_steps(h, positions))


#: The read-out runs at the scored steps only when no sequence has more of them than this fraction of its
#: steps (MQAR: N of 4N or fewer). Above it the whole read-out costs little more than the gathers.
SPARSE_READ_OUT = 0.25


def scored_steps(task: Any, batch: Any, sparse: float | None = None) -> torch.Tensor | None:
    """The steps (batch, K) the read-out must cover for `task` to score `batch`, or None for all of them.

    The task's `read_positions` (None: everywhere) gives the steps its loss and metrics read. If the most
    any sequence has, K, is at most `sparse` (default `SPARSE_READ_OUT`) of its T steps, each row lists its own read steps in
    order, then as many unread steps as it lacks (a stable sort on "unread"), so every row has K distinct
    real steps and a padding step is one the loss and the metrics do not read (its mask is False)."""
    reader = getattr(task, "read_positions", None)
    read = reader(batch) if reader is not None else None
    if read is None:
        return None
    steps = read.shape[1]
    most = max(int(read.sum(dim=1).max()), 1) if read.numel() else 1
    if most > (SPARSE_READ_OUT if sparse is None else sparse) * steps:
        return None
    return torch.sort((~read).to(torch.uint8), dim=1, stable=True).indices[:, :most]


def at_steps(t: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """`t` (batch, T, ...) at the steps (batch, K) of each row: (batch, K, ...)."""
    index = steps.view(*steps.shape, *(1,) * (t.dim() - 2)).expand(*steps.shape, *t.shape[2:])
    return t.gather(1, index)


def scored_forward(net: nn.Module, task: Any, batch: Any) -> tuple[torch.Tensor, Any]:
    """The outputs `task.loss` and `task.metrics` need, and the batch to score them with.

    Where the task reads few steps (`scored_steps`), the read-out runs at those steps only and the batch
    is cut to the same steps (inputs, targets and mask gathered alike), so loss and metrics are those of the
    full read-out, `task.loss(net(batch.inputs), batch)`, at a fraction of the read-out's cost. Otherwise
    (or for a network without the `positions` argument) it is exactly that full form."""
    steps = scored_steps(task, batch) if isinstance(net, SequenceNetwork) else None
    if steps is None:
        return net(batch.inputs), batch
    return net(batch.inputs, positions=steps), cut_batch(batch, steps)


def cut_batch(batch: Any, steps: torch.Tensor) -> Batch:
    """`batch` at the steps (batch, K) of each row: inputs, targets and mask gathered alike."""
    return Batch(at_steps(batch.inputs, steps), at_steps(batch.targets, steps), at_steps(batch.mask, steps))


def build_network(
    task: Any, model_name: str, hidden_size: int, model_options: dict[str, Any]
) -> SequenceNetwork:
    """The network for `task` around the registered model, from options as a RunConfig holds them
    (resolved once by `config.make_run_config`; not checked again here)."""
    core_in = hidden_size if task.input_kind == "tokens" else task.input_size
    core = MODELS.get(model_name)(core_in, hidden_size, **model_options)
    return SequenceNetwork(task, core, hidden_size)


def count_params(task: Any, model_name: str, hidden_size: int, model_options: dict[str, Any]) -> int:
    """Trainable parameters of the whole network (read-in, core, read-out) at this width. Built on the
    meta device: nothing is allocated, so sizing a large model costs nothing."""
    try:
        with torch.device("meta"):
            net = build_network(task, model_name, hidden_size, model_options)
    except (
        RuntimeError,
        NotImplementedError,
    ):  # a model using an op without a meta kernel: build it for real
        net = build_network(task, model_name, hidden_size, model_options)
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def hidden_for_params(
    task: Any, model_name: str, target: int, model_options: dict[str, Any], limit: int = 8192
) -> int:
    """The hidden width whose network's parameter count is closest to `target` (the count grows with the
    width, so a binary search finds the crossing)."""
    if target < 1:
        raise OptionsError(f"A parameter target must be positive, got {target}.")
    lo, hi = 1, limit
    while lo < hi:  # smallest width with at least `target` parameters
        mid = (lo + hi) // 2
        if count_params(task, model_name, mid, model_options) < target:
            lo = mid + 1
        else:
            hi = mid
    candidates = {max(1, lo - 1), lo}
    return min(candidates, key=lambda h: abs(count_params(task, model_name, h, model_options) - target))


def state_floats(core: nn.Module, length: int) -> tuple[int | None, int]:
    """(state size at `length` steps, floats added per step) for one sequence.

    A recurrent model carries a fixed state (`state_size`); an attention model's state is the history it
    attends over and grows by `state_per_step` floats per step (a transformer's key/value cache). The first
    number adds both up at the given length, so fixed and growing states compare at the training length."""
    fixed = getattr(core, "state_size", None)
    per_step = int(getattr(core, "state_per_step", 0))
    return (None if fixed is None else int(fixed) + per_step * length), per_step


def _core(task: Any, model_name: str, hidden_size: int, model_options: dict[str, Any]) -> nn.Module:
    """The network's core at this width, built on the meta device (for real where an op has no meta kernel)."""
    try:
        with torch.device("meta"):
            return build_network(task, model_name, hidden_size, model_options).core
    except (RuntimeError, NotImplementedError):
        return build_network(task, model_name, hidden_size, model_options).core


def count_state(task: Any, model_name: str, hidden_size: int, model_options: dict[str, Any]) -> int | None:
    """Floats of state per sequence at this width, counted as the runner stores it (`state_size`):
    `state_floats` of the core at the task's training length. None when the model declares no `state_size`."""
    return state_floats(_core(task, model_name, hidden_size, model_options), task.train_length)[0]


def hidden_for_state(
    task: Any, model_name: str, target: int, model_options: dict[str, Any], limit: int = 8192
) -> int:
    """The hidden width whose state per sequence is closest to `target` floats (`count_state`: what the
    result row's `state_size` holds).

    A growing state (attention's key/value cache, `state_per_step`) is counted at the task's training
    length, as `state_floats` and the stored `state_size` count it: a transformer sized to S floats on
    sequences of length T has S / T floats of cache per step (the equal-state comparison of Zoology, Arora
    et al. 2023, which counts attention's cache at the sequence length). The same target therefore gives
    an attention model a narrower width on a longer task.

    The state never shrinks as the width grows, so a binary search finds the crossing; of the two states
    around the target the closer one is taken (a tie: the smaller), at the widest width that has it (several
    widths share one state where it grows in steps: a transformer's head width is width // heads). Widths the constructor refuses (below the clockwork RNN's module count) count as too small.
    An OptionsError when the model declares no state, when its state does not depend on the width (it says
    which options set it), or when the target lies outside what widths 1..`limit` reach."""
    if target < 1:
        raise OptionsError(f"A state target must be positive, got {target}.")

    sizes: dict[int, int | None] = {}

    def state(hidden: int) -> int | None:  # None: a width the constructor refuses
        if hidden not in sizes:
            try:
                floats = count_state(task, model_name, hidden, model_options)
            except (OptionsError, ValueError):
                floats = None
            else:
                if floats is None:
                    raise OptionsError(
                        f"{model_name} declares no state_size (the floats it carries per sequence), so it "
                        "cannot be sized by state; size it by parameters (--params) or by --hidden-size."
                    )
            sizes[hidden] = floats
        return sizes[hidden]

    # The narrowest width the model can be built at (a constructor may refuse the smallest ones).
    low = 1
    while state(low) is None and low < limit:
        low = min(low * 2, limit)
    if state(low) is None:  # no width at all: the constructor's own error
        count_state(task, model_name, limit, model_options)
        raise OptionsError(f"{model_name} cannot be built at any width up to {limit}.")
    refused = low // 2  # at or below it refused (none when low is 1); the first width accepted above it
    while refused + 1 < low:
        mid = (refused + low) // 2
        if state(mid) is None:
            refused = mid
        else:
            low = mid
    smallest, largest = state(low), state(limit)
    length = task.train_length
    if smallest == largest:
        setters = _state_options(task, model_name, low, model_options)
        per_step = state_floats(_core(task, model_name, low, model_options), length)[1]
        why = [f"set by its options {', '.join(setters)}"] if setters else []
        if per_step:
            why.append(f"{per_step} floats per step times the task's training length {length}")
        raise OptionsError(
            f"{model_name}'s state ({smallest:,} floats per sequence) does not depend on the width"
            + (f" ({'; '.join(why)})" if why else "")
            + f": it cannot be sized to {target:,} floats by its width."
            + (f" Change {', '.join(setters)} instead." if setters else "")
        )
    if target < smallest:
        setters = _state_options(task, model_name, low, model_options)
        rest = f"; the rest is set by its options {', '.join(setters)}: lower them" if setters else ""
        raise OptionsError(
            f"{model_name}'s state is at least {smallest:,} floats per sequence (width {low}, training "
            f"length {length}), so no width gives {target:,}{rest}."
        )
    if target > largest:
        raise OptionsError(
            f"{model_name}'s state is at most {largest:,} floats per sequence at width {limit} (training "
            f"length {length}), so no width up to {limit} gives {target:,}."
        )
    lo, hi = low, limit
    while lo < hi:  # the narrowest width with at least `target` floats of state
        mid = (lo + hi) // 2
        s = state(mid)
        if s is None or s < target:
            lo = mid + 1
        else:
            hi = mid
    below = state(lo - 1) if lo - 1 >= low else None
    best = state(lo) if below is None or state(lo) - target < target - below else below  # ties: below
    lo, hi = low, limit
    while lo < hi:  # the widest width with that state (a plateau: a transformer's width // heads)
        mid = (lo + hi + 1) // 2
        s = state(mid)
        if s is not None and s > best:
            hi = mid - 1
        else:
            lo = mid
    return lo


def _state_options(task: Any, model_name: str, hidden_size: int, model_options: dict[str, Any]) -> list[str]:
    """The model's integer options that change its state at this width (memory_slots, stacks, ...): each
    doubled in turn, on the meta device."""
    base = count_state(task, model_name, hidden_size, model_options)
    names = []
    for key, value in model_options.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            continue
        try:
            changed = count_state(task, model_name, hidden_size, {**model_options, key: 2 * value})
        except (OptionsError, ValueError, TypeError, RuntimeError):  # a value the constructor refuses
            continue
        if changed != base:
            names.append(key)
    return names
