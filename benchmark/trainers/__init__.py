"""Trainers: how a batch's gradient is computed and when the weights are updated (`--trainer`).

    bptt    backpropagation through time over the whole batch (every model; the default)
    tbptt   truncated BPTT(k2; k1), Williams & Peng 1990: an update every k1 steps, backward through k2
    rtrl    exact real-time recurrent learning, Williams & Zipser 1989: influence matrices carried forward,
            updates online (every step) or at the end of each batch; small widths only (O(n^4) per step)
    uoro    unbiased online recurrent optimisation, Tallec & Ollivier 2017: RTRL's influence matrix kept as
            a random rank-one estimate; O(cost of a step) per step, so it scales

A trainer is built from its options (`--trainer-opt k1=10`), checks once that the network can do what it
needs (the stateful protocol, seqbench.stateful; RTRL's cost) and then trains one batch at a time:

    trainer = make_trainer("tbptt", {"k1": 10, "k2": 20})
    trainer.check(net, batch_size, model_name, hidden_size)       # OptionsError (exit 2) if it cannot
    loss = trainer.train_batch(net, batch, task.loss, update)      # update(): clip, optimiser step, zero

On a stream (`stream=True`) the trainer carries the state (and RTRL/UORO their influence estimates) from
one batch to the next, detached; on episodes every batch starts from the model's initial state. A batch
may hold several updates (tbptt: one per k1 steps; rtrl/uoro online: one per scored step); `updates`
counts them.

UORO rather than SnAp-1: UORO needs only one forward-mode and two reverse-mode products of the model's own
`step` per time step, so it works for every model with the protocol, unchanged; SnAp-1 needs the sparsity
pattern of each cell's one-step Jacobian written out per architecture to be cheaper than RTRL (computed
generically, its Jacobian costs O(n^3) per step). UORO's price is variance, measured against RTRL here.
"""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from seqbench import stateful
from seqbench.errors import OptionsError
from seqbench.options import validate_options
from seqbench.tasks.base import Batch
from seqbench.trainers import rtrl as _rtrl
from seqbench.trainers import uoro as _uoro
from seqbench.trainers.segments import LossFn, Update, bptt, tbptt


class Trainer:
    """Base: `needs` names the protocol the network's core must have ("segments", "steps" or None)."""

    name: ClassVar[str]
    needs: ClassVar[str | None] = None

    def __init__(self) -> None:
        self.carry: Any = None
        self.updates = 0

    def check(
        self, net: nn.Module, batch_size: int, model: str, hidden_size: int, stream: bool = False
    ) -> None:
        need = self.needs or ("segments" if stream else None)
        if need is not None:
            what = f"--trainer {self.name}" + (" on a stream" if stream and self.needs is None else "")
            stateful.require(net.core, need, what)

    def reset(self) -> None:
        """Forget the carried state (a new stream)."""
        self.carry = None

    def train_batch(
        self, net: nn.Module, batch: Batch, loss_fn: LossFn, update: Update, stream: bool = False
    ) -> float:
        raise NotImplementedError


class BPTT(Trainer):
    name = "bptt"

    def __init__(self) -> None:
        super().__init__()

    def train_batch(self, net, batch, loss_fn, update, stream=False) -> float:
        state = (self.carry or stateful.initial(net.core, batch.batch_size, batch.inputs)) if stream else None
        loss, self.carry = bptt(net, batch, loss_fn, state, update)
        self.updates += 1
        return loss


class TBPTT(Trainer):
    name = "tbptt"
    needs = "segments"

    def __init__(self, k1: int = 10, k2: int = 10) -> None:
        super().__init__()
        if not 1 <= k1 <= k2:
            raise OptionsError(
                f"--trainer tbptt needs 1 <= k1 <= k2 (update every k1 steps, backward through k2), got "
                f"k1={k1}, k2={k2}."
            )
        self.k1, self.k2 = k1, k2

    def train_batch(self, net, batch, loss_fn, update, stream=False) -> float:
        loss, state, n = tbptt(net, batch, loss_fn, self.k1, self.k2, self.carry if stream else None, update)
        self.carry, self.updates = state, self.updates + n
        return loss


class RTRL(Trainer):
    name = "rtrl"
    needs = "steps"

    def __init__(self, online: bool = True, max_influence: int = 200_000_000) -> None:
        super().__init__()
        self.online, self.max_influence = online, max_influence

    def check(self, net, batch_size, model, hidden_size, stream=False) -> None:
        super().check(net, batch_size, model, hidden_size, stream)
        like = stateful.initial(net.core, 1, next(net.parameters()))
        c = _rtrl.cost(net, batch_size, like)
        if c["influence_floats"] > self.max_influence:
            raise OptionsError(
                f"--trainer rtrl: {_rtrl.describe_cost(c, model, hidden_size, batch_size)}, over the limit of "
                f"{self.max_influence:.3g} floats. Use a smaller --hidden-size or --batch-size, --trainer uoro "
                f"(O(n^2) per step) or tbptt, or raise --trainer-opt max_influence=N."
            )

    def train_batch(self, net, batch, loss_fn, update, stream=False) -> float:
        loss, carry, n = _rtrl.rtrl(net, batch, loss_fn, self.carry if stream else None, update, self.online)
        self.carry, self.updates = carry, self.updates + n
        return loss


class UORO(Trainer):
    name = "uoro"
    needs = "steps"

    def __init__(self, online: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.online, self.seed = online, seed
        self.generator = None

    def train_batch(self, net, batch, loss_fn, update, stream=False) -> float:
        if self.generator is None:
            self.generator = _uoro.generator(batch.inputs.device, self.seed)
        loss, carry, n = _uoro.uoro(
            net, batch, loss_fn, self.generator, self.carry if stream else None, update, self.online
        )
        self.carry, self.updates = carry, self.updates + n
        return loss


TRAINERS: dict[str, type[Trainer]] = {t.name: t for t in (BPTT, TBPTT, RTRL, UORO)}


def trainer_class(name: str) -> type[Trainer]:
    if name not in TRAINERS:
        raise OptionsError(f"Unknown trainer {name!r}. Available: {', '.join(TRAINERS)}.")
    return TRAINERS[name]


def validate_trainer_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options coerced to the trainer's constructor types, with its defaults filled in (so that one
    configuration has one hash however it was spelled)."""
    import inspect

    cls = trainer_class(name)
    given = validate_options(cls, dict(options), f"trainer {name!r}")
    defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items() if k != "self"}
    return {**defaults, **given}


def make_trainer(name: str = "bptt", options: dict[str, Any] | None = None) -> Trainer:
    return trainer_class(name)(**validate_trainer_options(name, options or {}))


__all__ = ["TRAINERS", "Trainer", "bptt", "make_trainer", "tbptt", "validate_trainer_options"]
