"""The protocol of the Chomsky-hierarchy suite (Delétang et al. 2023, "Neural Networks and the Chomsky
Hierarchy", ICLR, arXiv:2207.02098; code: google-deepmind/neural_networks_chomsky_hierarchy).

Each task maps an input string x_1 .. x_n to an output string y_1 .. y_m (m = 1 for the classification
tasks). As in NNCH's `make_model_with_empty_targets`, the model reads the input followed by m copies of an
"answer" token (the vocabulary's last symbol) and is read out at those m steps:

    step     1 .. n          n+1 .. n+m
    input    x_1 .. x_n      ?   ..  ?        (? = the answer token, id `symbols`)
    target   .  ..  .        y_1 ..  y_m
    mask     0  ..  0        1   ..  1        (0 after a termination token, see below)

Loss: cross-entropy averaged over all m answer steps (NNCH's `loss_fn`: the padding after a termination
token included). Accuracy: NNCH's, per token, the fraction of right answer tokens over the masked ones
(tasks whose output ends with a termination token score up to and including it, `accuracy_mask`); also
`sequence_accuracy` (every scored token right).

Protocol: trained on input lengths drawn uniformly from 1..40; evaluated at every length 41..500. A run's
headline `accuracy` is the mean accuracy over the evaluation lengths beyond the training range (NNCH's
"score"); `accuracy_by_length` holds each length, and the training length's own figure is in the row's
metrics as `train_length_accuracy`. NNCH reports the maximum over 10 seeds (and 3 learning rates); seqbench
aggregates over seeds as always and shows the maximum only as a labelled comparison column.

Draws that NNCH makes with Python's or NumPy's global random state (the tasks it cannot jit) come here from a
`random.Random` seeded from the torch generator, so a seed gives the same batch on any device.
"""

from __future__ import annotations

import random
from typing import ClassVar, Literal

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, Task

TRAIN_MAX = 40  # NNCH: trained on lengths 1..40
EVAL_MAX = 500  # evaluated on 41..500


def python_rng(generator: torch.Generator) -> random.Random:
    """A Python RNG for the tasks NNCH generates in Python, seeded from (and advancing) the torch generator."""
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item()
    return random.Random(int(seed))


def until_termination(outputs: torch.Tensor, token: int) -> torch.Tensor:
    """NNCH's `accuracy_mask`: True up to and including the first `token` of each row. (B, m) -> (B, m)."""
    seen = (outputs == token).long().cumsum(dim=1)
    return (seen == 0) | ((seen == 1) & (outputs == token))


class ChomskyTask(Task):
    """Base class of the suite. Subclasses set `level`, `symbols` (input vocabulary, answer token excluded),
    `classes` and implement `generate` (and `output_length` unless it is 1)."""

    input_kind = "tokens"
    suite: ClassVar[str] = "chomsky"
    level: ClassVar[Literal["regular", "dcf", "cs"]]
    symbols: ClassVar[int]
    classes: ClassVar[int]
    #: the output token that ends the answer (scored up to it), or None when every answer step is scored
    termination: ClassVar[int | None] = None
    #: the options the registry-wide contract tests build it with (the protocol's 461 lengths cost a minute)
    test_options: ClassVar[dict] = {"eval_lengths": (41, 57, 100)}
    presets: ClassVar[dict[str, dict]] = {
        # NNCH trains 1,000,000 steps at batch 128 with Adam (lr 1e-4, 3e-4 or 5e-4, the best kept: its §A.4)
        # and evaluates 512 sequences per length; `quick` is a CPU-sized sketch of it.
        "quick": {"steps": 2000, "batch_size": 32, "eval_every": 200, "eval_size": 64},
        "paper": {"steps": 1_000_000, "batch_size": 128, "eval_every": 10_000, "eval_size": 512},
    }

    def __init__(
        self,
        min_length: int = 1,
        max_length: int = TRAIN_MAX,
        eval_lengths: tuple[int, ...] | None = None,
    ) -> None:
        name = type(self).__name__
        if not 1 <= min_length <= max_length:
            raise OptionsError(f"{name}: need 1 <= min_length <= max_length, got {min_length}..{max_length}.")
        lengths = tuple(eval_lengths) if eval_lengths else tuple(range(max_length + 1, EVAL_MAX + 1))
        if min(lengths) < 1:
            raise OptionsError(f"{name}: evaluation lengths must be >= 1, got {min(lengths)}.")
        if not any(n > max_length for n in lengths):
            raise OptionsError(f"{name}: evaluate beyond the training lengths (> {max_length}).")
        self.input_size = self.symbols + 1  # + the answer token
        self.output_size = self.classes
        self.answer = self.symbols
        self.train_lengths = (min_length, max_length)
        self.eval_lengths = tuple(sorted(set(lengths) | {max_length}))

    # -- what a subclass defines ------------------------------------------------------------------------------

    def output_length(self, length: int) -> int:
        return 1

    def generate(self, batch_size: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """(inputs (B, n) in 0..symbols-1, outputs (B, m) in 0..classes-1), on the generator's device."""
        raise NotImplementedError

    # -- the protocol -----------------------------------------------------------------------------------------

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        x, y = self.generate(batch_size, length, generator)
        dev, (B, n), m = generator.device, x.shape, y.shape[1]
        x, y = x.to(dev, torch.long), y.to(dev, torch.long)
        inputs = torch.cat([x, torch.full((B, m), self.answer, dtype=torch.long, device=dev)], dim=1)
        targets = torch.cat([torch.zeros(B, n, dtype=torch.long, device=dev), y], dim=1)
        scored = (
            until_termination(y, self.termination) if self.termination is not None else torch.ones_like(y)
        )
        mask = torch.cat([torch.zeros(B, n, dtype=torch.bool, device=dev), scored.bool()], dim=1)
        return Batch(inputs, targets, mask)

    def read_positions(self, batch: Batch) -> torch.Tensor:
        """The answer steps: the loss reads them all (padding after termination too), the metrics the mask
        within them."""
        return (batch.inputs == self.answer) | batch.mask

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        answer = batch.inputs == self.answer  # every answer step, padding after termination included
        return torch.nn.functional.cross_entropy(outputs[answer], batch.targets[answer])

    @torch.no_grad()
    def metrics(self, outputs: torch.Tensor, batch: Batch) -> dict[str, float]:
        m = batch.mask
        right = (outputs.argmax(-1) == batch.targets) & m
        return {
            "accuracy": (right.sum() / m.sum()).item(),
            "sequence_accuracy": (right.sum(1) == m.sum(1)).float().mean().item(),
        }

    def chance(self, length: int) -> dict[str, float]:
        """A uniform guess over the output classes, per token (NNCH's "random accuracy" for the tasks)."""
        return {"accuracy": 1 / self.classes}

    def summary(self, by_length: dict[int, dict[str, float]]) -> dict[str, float]:
        """NNCH's score: every metric averaged over the evaluation lengths beyond the training range."""
        beyond = [metrics for n, metrics in by_length.items() if n > self.train_lengths[1]]
        if not beyond:  # a run that stopped (diverged) before its final evaluation: the training length's
            return by_length[self.train_length]
        out = {k: sum(m[k] for m in beyond) / len(beyond) for k in beyond[0]}
        out["train_length_accuracy"] = by_length[self.train_length]["accuracy"]
        return out

    def solved(self, metrics: dict[str, float], threshold: float) -> bool:
        """NNCH trains for a fixed budget: a perfect training length says nothing of the lengths beyond it,
        so a run never stops early."""
        return False
