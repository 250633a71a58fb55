"""The optional stateful model protocol: what truncated BPTT, RTRL, UORO and streams need from a model.

The plain contract (DESIGN.md) is `forward(x) -> h`, (B, T, I) -> (B, T, H), from a fresh state every
call. A model that can also take and return its state adds, on the same class:

    initial_state(batch_size, device=None, dtype=None) -> state
        The state before the first step: a tuple of tensors, each batch first, (B, ...). A tuple (never a
        dict or a bare tensor) so that trainers can detach, slice by row and flatten it generically.
    forward_state(x, state) -> (h, state)
        Run a segment x (B, T, I) from `state`; h is (B, T, H) as `forward` gives, `state` the one after
        the last step. Running two halves with the state carried equals running the whole:
            h1, s = forward_state(x[:, :t], initial_state(B));  h2, s = forward_state(x[:, t:], s)
            cat([h1, h2], 1) == forward(x)          (checked by seqbench.testing.check_stateful)
    step(x_t, state) -> (h_t, state)                                             (optional, for RTRL/UORO)
        One time step, x_t (B, I) -> h_t (B, H), written with differentiable torch ops only (no in-place
        writes to the state, no C++ loops), so that `torch.func` can take its Jacobians with respect to
        the state and the parameters. Rows must not interact (it is run under `vmap`, one row at a time).

Without `forward_state`, a model that has `step` gets a Python loop over `step`. Which trainers need what:

    bptt               the plain `forward` (every model); on a stream: `initial_state` + `forward_state`
    tbptt              `initial_state` + `forward_state` (or `step`)
    rtrl, uoro         `initial_state` + `step`

Asking for a trainer or a stream that a model cannot do is a configuration error (OptionsError, exit 2) that
names what is missing. The built-ins with the protocol: rnn, irnn, lstm, gru (models.common's
FusedRecurrentState: the fused kernel for `forward_state`, the cell equations for `step`); Greff's LSTM
variants and lstm_1997, gru_cho, ntm, dnc, stack_rnn, clockwork_rnn, depth_gated_lstm and grid_lstm (each in
its own file), and conv_rnn for segments only (its state holds the convolution's last k - 1 inputs and the
position within the current block; it has no `step`, so no RTRL or UORO); the backbone models whose mixers all
have a recurrent form. Without it: the transformer, hyena, memory_network and lstm_attention (they attend over
every earlier step, a state that grows with the stream).

A learned initial state (the NTM's memory bias, the DNC's controller state) is a function of parameters:
`initial_state` keeps it attached, truncated BPTT leaves it attached where it starts from the model's own
initial state, and RTRL starts its influence matrix at its Jacobian, so both equal BPTT there.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seqbench.errors import OptionsError

State = tuple[torch.Tensor, ...]

#: What each use of the protocol needs; `forward_state` may be replaced by a loop over `step`.
NEEDS: dict[str, tuple[str, ...]] = {
    "segments": ("initial_state", "forward_state"),
    "steps": ("initial_state", "step"),
}


def missing(core: nn.Module, need: str) -> list[str]:
    """The protocol methods `core` lacks for `need` ('segments' or 'steps'). A model whose class has the
    methods but says `recurrent = False` (a backbone model whose mixer has no recurrent form: attention,
    Hyena) lacks them all."""
    if getattr(core, "recurrent", True) is False:
        return list(NEEDS[need])
    names = [n for n in NEEDS[need] if not callable(getattr(core, n, None))]
    if need == "segments" and names == ["forward_state"] and callable(getattr(core, "step", None)):
        return []  # a loop over `step` runs segments
    return names


def require(core: nn.Module, need: str, what: str) -> None:
    """Raise OptionsError naming the missing methods if `core` cannot do `need` (for `what`, e.g. a trainer)."""
    lacks = missing(core, need)
    if lacks:
        name = type(core).__name__
        raise OptionsError(
            f"{what} needs the stateful model protocol, and model {name} lacks {', '.join(lacks)} "
            f"(see seqbench.stateful). Train it with --trainer bptt on episodes, or add "
            f"{' and '.join(lacks)} to {name}."
        )


def is_stateful(core: nn.Module) -> bool:
    return not missing(core, "segments")


def run_segment(core: nn.Module, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    """`forward_state`, or a loop over `step` for a model that only has that."""
    if callable(getattr(core, "forward_state", None)):
        h, state = core.forward_state(x, state)
        return h, tuple(state)
    outs = []
    for x_t in x.unbind(1):  # unbind, never x[:, t]: indexing makes backward quadratic in T (PERF-NOTES)
        h_t, state = core.step(x_t, state)
        outs.append(h_t)
    return torch.stack(outs, dim=1), tuple(state)


def initial(core: nn.Module, batch_size: int, like: torch.Tensor) -> State:
    """The model's initial state, on the device and in the floating dtype of the model's parameters."""
    p = next(core.parameters(), None)
    ref = p if p is not None else like
    return tuple(core.initial_state(batch_size, device=ref.device, dtype=ref.dtype))


def detach(state: State) -> State:
    return tuple(s.detach() for s in state)


def flatten(state: State) -> torch.Tensor:
    """(B, S): every state tensor of a row laid end to end."""
    return torch.cat([s.reshape(s.shape[0], -1) for s in state], dim=1)


def unflatten(flat: torch.Tensor, like: State) -> State:
    """The inverse of `flatten`, shaped like `like` (whose batch size may differ from flat's)."""
    out, at = [], 0
    for s in like:
        n = s[0].numel()
        out.append(flat[:, at : at + n].reshape(flat.shape[0], *s.shape[1:]))
        at += n
    return tuple(out)


def state_numel(state: State) -> int:
    """Floats of state per row."""
    return sum(s[0].numel() for s in state)


def describe(core: Any) -> str:
    """'stateful (step)', 'stateful' or 'plain': for `seqbench ls models`-style listings."""
    if not is_stateful(core):
        return "plain"
    return "stateful (step)" if callable(getattr(core, "step", None)) else "stateful"
