"""One training step, the same for the runner, `bench --overhead`, the probe and the benchmarks.

    training = Training.build(config, task, device)     # seeded network, optimiser, trainer
    batch = training.sample(generator)                  # the next training batch, as a run draws it
    loss = training.step(batch)                         # one optimiser step; the loss as a float

What a step does is the trainer's business, and the trainer is a setting of the training (`trainer_for`):
the one built in is full backpropagation through time,

    BPTT:  forward the whole batch -> task.loss (masked) -> backward -> clip -> optimiser step.

(The read-out runs only at the steps the loss reads where those are few: `network.scored_forward`.)

The seam for other trainers (truncated BPTT, RTRL): a class with `step(training, batch) -> loss tensor`,
registered in `TRAINERS` under the name a configuration selects it by. It gets the whole `Training` (the
network, the task for its loss, the optimiser, the parameters and the training settings) and owns the
order of forward, backward and optimiser steps within one batch, so a trainer that updates several times
per batch (truncated BPTT over chunks) or computes its gradients online (RTRL) fits the same call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from seqbench.network import build_network, scored_forward

if TYPE_CHECKING:
    from seqbench.config import RunConfig, TrainConfig


class Trainer(Protocol):
    """How one batch turns into parameter updates (see the module's docstring)."""

    name: str

    def step(self, training: Training, batch: Any) -> torch.Tensor: ...


class BPTT:
    """Full backpropagation through time: one forward over the whole sequence, one backward, one update."""

    name = "bptt"

    def step(self, training: Training, batch: Any) -> torch.Tensor:
        outputs, scored = scored_forward(training.net, training.task, batch)  # read-out where scored
        loss = training.task.loss(outputs, scored)
        training.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(training.params, training.config)
        training.optimizer.step()
        return loss


#: Trainers by the name a configuration selects them with.
TRAINERS: dict[str, type] = {"bptt": BPTT}


class Trained:
    """Any trainer of `seqbench.trainers` (tbptt, rtrl, uoro; bptt on a stream) behind the `step` seam: it
    owns when the optimiser steps within a batch (`update`: clip, step, zero the gradients) and, on a
    stream, carries the state from one batch to the next. `updates` counts the optimiser steps."""

    def __init__(self, name: str, options: dict[str, Any], stream: bool) -> None:
        from seqbench.trainers import make_trainer

        self.inner, self.stream = make_trainer(name, options), stream
        self.name = name

    @property
    def updates(self) -> int:
        return self.inner.updates

    def step(self, training: Training, batch: Any) -> torch.Tensor:
        def update() -> None:
            clip_gradients(training.params, training.config)
            training.optimizer.step()
            training.optimizer.zero_grad(set_to_none=True)

        training.optimizer.zero_grad(set_to_none=True)
        loss = self.inner.train_batch(training.net, batch, training.task.loss, update, self.stream)
        return torch.tensor(loss)


def trainer_for(config: TrainConfig) -> Trainer:
    """The trainer a configuration asks for: full BPTT on episodes (the built-in step above), or one of
    `seqbench.trainers` (`trainer`, `trainer_options`, on a stream with `stream`)."""
    if config.trainer == "bptt" and not config.stream:
        return TRAINERS["bptt"]()
    return Trained(config.trainer, config.trainer_options, bool(config.stream))


def make_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    if cfg.optimizer == "rmsprop":
        # Graves' RMSProp as used for the NTM: centred, decay 0.95 (PyTorch's `alpha`), with momentum.
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.95, momentum=cfg.momentum, centered=True)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


def clip_gradients(params: list[torch.nn.Parameter], cfg: TrainConfig) -> None:
    """norm: the L2 norm of all gradients together; value: element-wise; none: no clipping."""
    if cfg.clip == "norm":
        torch.nn.utils.clip_grad_norm_(params, cfg.clip_value)
    elif cfg.clip == "value":
        torch.nn.utils.clip_grad_value_(params, cfg.clip_value)


def count_parameters(net: torch.nn.Module) -> int:
    """The parameter count every row reports (`params`): trainable parameters, read-in, model and read-out
    together. The same count sizes a width to a parameter target (`network.count_params`)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def sync(device: torch.device) -> None:
    """Wait for the device, so that a timer around GPU work measures the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Training:
    """A network being trained on a task: what one step needs."""

    net: torch.nn.Module
    task: Any
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    config: TrainConfig
    trainer: Trainer

    @classmethod
    def build(cls, config: RunConfig, task: Any, device: torch.device) -> Training:
        """The network for `config` (initialised from its seed, compiled if asked), its optimiser and its
        trainer. `config`'s options are taken as resolved (`config.make_run_config`)."""
        cfg = config.train
        torch.manual_seed(config.seed)
        net = build_network(task, config.model, cfg.hidden_size, config.model_options).to(device)
        if cfg.compile:  # compiles on the first step of each new input shape: counted in train_time_s
            net.core = torch.compile(net.core, dynamic=True)
        params = [p for p in net.parameters() if p.requires_grad]
        return cls(net, task, make_optimizer(params, cfg), params, cfg, trainer_for(cfg))

    def sample(self, generator: torch.Generator) -> Any:
        """The next training batch from `generator` (seeded with the run's seed, on the run's device): a
        training length drawn by the task, then a batch at it."""
        return self.task.sample(self.config.batch_size, self.task.sample_length(generator), generator)

    def step(self, batch: Any) -> float:
        """One training step on `batch`; its loss (reading it synchronises with the device)."""
        return self.trainer.step(self, batch).item()


def training_config(
    task_name: str, model: str, device: str, steps: int | None, batch_size: int | None = None, **kwargs: Any
) -> Any:
    """A quick-preset run configuration with one thread and `steps` steps (None: the preset's; other
    keywords as `make_run_config`'s)."""
    from seqbench.config import make_run_config

    overrides = {"steps": steps, "threads": 1, "batch_size": batch_size}
    return make_run_config(task_name, model, device=device, **overrides, **kwargs)


def bare_training(
    config: Any, steps: int, on_built: Callable[[Training], None] | None = None
) -> tuple[Training, float]:
    """`steps` training steps (`Training.step`, the runner's own) with nothing around them, on batches
    drawn beforehand (the sequence of batches the runner draws). The training and the seconds the steps
    took; `on_built(training)` runs before the first step, untimed."""
    from seqbench.runner import resolve_device

    device = resolve_device(config.device)
    training = Training.build(config, config.make_task(), device)
    if on_built:
        on_built(training)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    batches = [training.sample(gen) for _ in range(steps)]
    sync(device)
    t0 = time.perf_counter()
    for batch in batches:
        training.step(batch)
    sync(device)
    return training, time.perf_counter() - t0
