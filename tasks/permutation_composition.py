"""Permutation composition: the word problem of a finite group (Merrill, Petty & Sabharwal 2024, "The Illusion
of State in State-Space Models", arXiv:2404.08819; Grazzi et al. 2025, "Unlocking State-Tracking in Linear
RNNs Through Negative Eigenvalues", arXiv:2411.12537).

The input is a sequence of elements g_1 .. g_T of a permutation group G (S3, S5 or A5, one token per element);
at every position t the model must output the composition so far,

    s_t = g_t ∘ s_{t-1} = g_t ∘ ... ∘ g_2 ∘ g_1,      s_0 = identity,

i.e. the permutation obtained by applying g_1 first, then g_2, ... . For S5 and A5 (non-solvable groups) this
is NC1-complete: no fixed-depth transformer or diagonal linear state-space model solves it for every length,
while an RNN with a 120- (or 60-) state automaton does; S3 is solvable (the easy control).

Elements are numbered in the lexicographic order of their one-line notation (itertools.permutations, for A5
restricted to the even ones); element 0 is the identity. Worked example in S3, whose elements are

    0 = (0 1 2)   1 = (0 2 1)   2 = (1 0 2)   3 = (1 2 0)   4 = (2 0 1)   5 = (2 1 0)     (one-line notation)

    step     1  2  3  4
    input    2  2  3  1          g_t
    target   2  0  3  5          s_t: (1 0 2); identity; (1 2 0); (0 2 1)∘(1 2 0) = (2 1 0)
    mask     1  1  1  1          every position is scored

The knob `length` is T: trained on `min_length`..`max_length`, evaluated up to 8x longer. Primary `accuracy`:
the fraction of positions whose prefix composition is right (the measure of Merrill et al. and Grazzi et al.);
also `sequence_accuracy` (every position right) and `final_accuracy` (the last position). Chance: 1/|G| per
position (the running product of uniform elements is itself uniform).
"""

from __future__ import annotations

import itertools
from typing import ClassVar, Literal

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, ClassificationTask

GROUPS = ("S3", "S5", "A5")


def _is_even(p: tuple[int, ...]) -> bool:
    inversions = sum(1 for i in range(len(p)) for j in range(i + 1, len(p)) if p[i] > p[j])
    return inversions % 2 == 0


def group_elements(group: str) -> list[tuple[int, ...]]:
    """The elements of `group` in one-line notation, lexicographic order (the identity first)."""
    n = int(group[1:])
    perms = list(itertools.permutations(range(n)))
    return [p for p in perms if _is_even(p)] if group.startswith("A") else perms


def composition_table(group: str) -> torch.Tensor:
    """table[a, b] = index of (a ∘ b), the permutation that applies b first, then a: (a ∘ b)(i) = a[b[i]]."""
    elements = group_elements(group)
    index = {p: i for i, p in enumerate(elements)}
    table = [[index[tuple(a[b[i]] for i in range(len(a)))] for b in elements] for a in elements]
    return torch.tensor(table, dtype=torch.long)


class PermutationComposition(ClassificationTask):
    input_kind = "tokens"
    presets: ClassVar[dict[str, dict]] = {
        "quick": {"steps": 2000, "batch_size": 32, "eval_every": 200, "eval_size": 256},
        "paper": {"steps": 100_000, "batch_size": 128, "eval_every": 2000, "eval_size": 1024},
    }

    def __init__(
        self,
        group: Literal["S3", "S5", "A5"] = "S5",
        min_length: int = 1,
        max_length: int = 32,
        eval_lengths: tuple[int, ...] | None = None,
    ) -> None:
        if group not in GROUPS:
            raise OptionsError(f"permutation_composition: group must be one of {GROUPS}, got {group!r}.")
        if not 1 <= min_length <= max_length:
            raise OptionsError(
                f"permutation_composition: need 1 <= min_length <= max_length, got {min_length}..{max_length}."
            )
        lengths = eval_lengths or (max_length, 2 * max_length, 4 * max_length, 8 * max_length)
        if min(lengths) < 1:
            raise OptionsError(f"permutation_composition: evaluation lengths must be >= 1, got {lengths}.")
        self.group = group
        self.table = composition_table(group)  # (|G|, |G|)
        self.order = self.table.shape[0]
        self.input_size = self.output_size = self.order
        self.train_lengths = (min_length, max_length)
        self.eval_lengths = tuple(sorted(set(lengths) | {max_length}))

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        g, dev = generator, generator.device
        inputs = torch.randint(0, self.order, (batch_size, length), generator=g, device=dev)
        table = self.table.to(dev)
        state = torch.zeros(batch_size, dtype=torch.long, device=dev)  # the identity
        prefix = []
        for x in inputs.unbind(1):  # s_t = g_t ∘ s_{t-1}
            state = table[x, state]
            prefix.append(state)
        targets = torch.stack(prefix, dim=1)  # (B, T)
        mask = torch.ones(batch_size, length, dtype=torch.bool, device=dev)
        return Batch(inputs, targets, mask)

    @torch.no_grad()
    def metrics(self, outputs: torch.Tensor, batch: Batch) -> dict[str, float]:
        right = outputs.argmax(-1) == batch.targets  # (B, T); every position is scored
        return {
            "accuracy": right.float().mean().item(),
            "sequence_accuracy": right.all(dim=1).float().mean().item(),
            "final_accuracy": right[:, -1].float().mean().item(),
        }

    def chance(self, length: int) -> dict[str, float]:
        return {
            "accuracy": 1 / self.order,
            "sequence_accuracy": self.order**-length,
            "final_accuracy": 1 / self.order,
        }
