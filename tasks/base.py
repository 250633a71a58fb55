"""The task contract: a class built from options (difficulty knobs) that samples batches from a generator.

A task knows its input (vectors of `input_size` channels, or tokens from a vocabulary of `input_size`),
its output size, its loss, its metrics (one of them the primary `accuracy` in [0, 1]), its training lengths
and its longer evaluation lengths. Everything is generated on the generator's device, vectorised over the
batch, so the same seed gives the same batch in any run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar, Literal

import torch


@dataclass
class Batch:
    """inputs: (B, T, C) float or (B, T) long; targets: task-specific, aligned on T; mask: (B, T) bool,
    True where the loss and the metrics look."""

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        return Batch(*(getattr(self, f.name).to(device) for f in fields(self)))

    @property
    def batch_size(self) -> int:
        return self.inputs.shape[0]

    @property
    def steps(self) -> int:
        """Time steps per sequence (what tokens/s counts)."""
        return self.inputs.shape[1]


class Task:
    """Base class for tasks. Subclasses set the attributes below and implement `sample`, `loss`, `metrics`."""

    input_kind: ClassVar[Literal["vector", "tokens"]] = "vector"
    #: False for tasks whose batch is fully determined by its length (e.g. the string a^n b^n).
    stochastic: ClassVar[bool] = True
    #: Default budget hints per preset (steps, batch_size, lr, ...) that fit this task; see seqbench.presets.
    presets: ClassVar[dict[str, dict]] = {}

    input_size: int  # channels, or vocabulary size for token tasks
    output_size: int  # channels or classes of the read-out
    train_lengths: tuple[int, int]  # inclusive range the runner samples training lengths from
    eval_lengths: tuple[int, ...]  # fixed evaluation lengths, at and beyond the training range

    @property
    def train_length(self) -> int:
        """The length whose evaluation gives the primary `accuracy` (the longest training length)."""
        return self.train_lengths[1]

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self, outputs: torch.Tensor, batch: Batch) -> dict[str, float]:
        """Means over the batch; must include `accuracy` in [0, 1]."""
        raise NotImplementedError

    def read_positions(self, batch: Batch) -> torch.Tensor | None:
        """Where `loss` and `metrics` read the outputs: a (B, T) bool, or None for everywhere (the default).

        A task that returns positions promises that its loss and metrics, given the outputs and the batch
        (inputs, targets and mask alike) at a subset of each sequence's steps that holds every one of these
        positions in their order, give what they give on the whole sequence. Where the positions are few
        the runner then computes the read-out at that subset only (`seqbench.network.scored_forward`):
        MQAR scores N of its 4N steps, each through an 8,192-way read-out."""
        return None

    def chance(self, length: int) -> dict[str, float]:
        """What a predictor that ignores the input scores at `length` (drawn as the chance line)."""
        return {}

    def chance_on(self, length: int, batches: list[Batch]) -> dict[str, float]:
        """Chance on the evaluation set that is really scored (`batches`, at `length`). The default is the
        expectation `chance(length)`; a task whose chance predictor is a fixed output (adding: the constant
        1) scores that predictor on the set itself, since a finite set's figure differs from the
        expectation by its sampling noise."""
        return self.chance(length)

    def summary(self, by_length: dict[int, dict[str, float]]) -> dict[str, float]:
        """The row's headline metrics from the final evaluation at every length: by default those at the
        training length (the Chomsky-hierarchy tasks score the mean over the evaluation lengths instead)."""
        return by_length[self.train_length]

    def solved(self, metrics: dict[str, float], threshold: float) -> bool:
        """Whether evaluation metrics at the training length count as solving the task (stops a run)."""
        return metrics["accuracy"] >= threshold

    def sample_length(self, generator: torch.Generator) -> int:
        lo, hi = self.train_lengths
        return int(torch.randint(lo, hi + 1, (1,), generator=generator, device=generator.device).item())


def _own_scoring(task: Task, base: type[Task]) -> bool:
    """Whether `task` scores with `base`'s own loss and metrics, which read the outputs only at the mask."""
    cls = type(task)
    return cls.loss is base.loss and cls.metrics is base.metrics


class ClassificationTask(Task):
    """A task whose targets are class indices (B, T) scored where the mask is on: cross-entropy loss,
    `token_accuracy` over the scored positions and the primary `accuracy` = every scored position of a
    sequence right."""

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        m = batch.mask
        return torch.nn.functional.cross_entropy(outputs[m], batch.targets[m])

    def read_positions(self, batch: Batch) -> torch.Tensor | None:
        """The mask, where this class's loss and metrics score (a subclass overriding either says again)."""
        return batch.mask if _own_scoring(self, ClassificationTask) else None

    @torch.no_grad()
    def metrics(self, outputs: torch.Tensor, batch: Batch) -> dict[str, float]:
        m = batch.mask
        wrong = (outputs.argmax(-1) != batch.targets) & m  # (B, T)
        return {
            "accuracy": (~wrong.any(dim=1)).float().mean().item(),
            "token_accuracy": 1.0 - (wrong.sum() / m.sum()).item(),
        }


class BitTask(Task):
    """A task whose targets are bit vectors (B, T, C) and whose outputs are logits: binary cross-entropy on
    the masked steps; sequence accuracy (no bit wrong: the primary `accuracy`), bit errors per sequence,
    bit accuracy and the cross-entropy cost in bits per sequence (the NTM paper's "cost")."""

    # The NTM paper's tasks: batch 1 and RMSProp in the paper; batched here for `quick`.
    presets: ClassVar[dict[str, dict]] = {
        "quick": {"steps": 4000, "batch_size": 32, "eval_every": 200, "eval_size": 128},
        "paper": {"steps": 100_000, "batch_size": 1, "eval_every": 1000, "eval_size": 256},
    }

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        m = batch.mask
        return torch.nn.functional.binary_cross_entropy_with_logits(outputs[m], batch.targets[m])

    def read_positions(self, batch: Batch) -> torch.Tensor | None:
        """The mask, where this class's loss and metrics score (a subclass overriding either says again)."""
        return batch.mask if _own_scoring(self, BitTask) else None

    @torch.no_grad()
    def metrics(self, outputs: torch.Tensor, batch: Batch) -> dict[str, float]:
        m = batch.mask.unsqueeze(-1).float()  # (B, T, 1)
        wrong = ((outputs > 0).float() != batch.targets).float() * m  # logit > 0  <=>  p > 0.5
        errors = wrong.sum(dim=(1, 2))  # (B,)
        bce = (
            torch.nn.functional.binary_cross_entropy_with_logits(outputs, batch.targets, reduction="none") * m
        )
        return {
            "accuracy": (errors == 0).float().mean().item(),
            "bit_errors": errors.mean().item(),
            "bit_accuracy": 1.0 - (wrong.sum() / (m.sum() * batch.targets.shape[-1])).item(),
            "cost_bits": (bce.sum(dim=(1, 2)) / math.log(2)).mean().item(),
        }


def answer_at_end(inputs: torch.Tensor, answer: torch.Tensor) -> Batch:
    """A batch scored only at its last step: class `answer` (B,) there, nothing anywhere else."""
    B, T = inputs.shape[:2]
    targets = torch.zeros(B, T, dtype=answer.dtype, device=inputs.device)
    targets[:, -1] = answer
    mask = torch.zeros(B, T, dtype=torch.bool, device=inputs.device)
    mask[:, -1] = True
    return Batch(inputs, targets, mask)
