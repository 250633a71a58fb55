"""Multi-query associative recall (Arora et al. 2023, "Zoology: Measuring and Improving Recall in Efficient
Language Models", arXiv:2312.04927; generator: HazyResearch/zoology `zoology/data/multiquery_ar.py`).

N key-value pairs open a sequence of T tokens (keys distinct, from 1..V/2-1; values distinct, from V/2..V-1);
later each key appears once more, and the model must emit its value at that position. Every other position
is ignored. The default (`variant="zoology"`) is Zoology's generator in every point:

- query positions: the key of pair i is queried at 2N + 2 g_i, the gaps g_i drawn without replacement from
  0..(T - 2N)/2 - 1 with P(g) proportional to (g + 1)^(a - 1), power_a a = 0.01 (a power law: most queries
  come soon after the pairs), always at even offsets from the end of the pairs;
- every non-query position after the pairs holds a random token of the whole vocabulary
  (`random_non_queries=True`), so fillers may look like keys or values;
- values are distinct within a sequence (drawn without replacement);
- training mix: (T, N) = (64, 4), (128, 8), (256, 16), (256, 32), (256, 64), drawn per batch with Zoology's
  example counts (100k, 20k, 20k, 20k, 20k); test configurations (T, N) = (64, 4), (64, 8), (64, 16),
  (128, 32), (256, 64), (512, 128), (1024, 256) (`original_mqar_configs.py`).

Worked example, N = 2, T = 12 (`r`: a random token, `.`: ignored), gaps g = (2, 0):

    step     1   2   3   4   5   6   7   8   9   10  11  12
    input    k3  v9  k1  v6  k1  r   r   r   k3  r   r   r
    target   .   .   .   .   v6  .   .   .   v9  .   .   .
    mask     0   0   0   0   1   0   0   0   1   0   0   0

The knob `length` is N; the evaluation at N uses Zoology's test sequence length for it, T = max(64, 4N).
Primary `accuracy`: Zoology's, the fraction of queries answered right (per sequence, then averaged); also
`sequence_accuracy` (every query right). A run's headline figure is the mean over the test configurations,
as Zoology's `valid/accuracy` is. Chance: 2/V per query.

`variant="seqbench"` is the form seqbench used before (task version 1): query positions uniform over the
positions after the pairs, filler token 0, values drawn with replacement, trained on N in 4..16 at T = 64 and
scored at the longest training N (every query right as `accuracy`, `token_accuracy` per query).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, ClassificationTask

# (T, N, examples) of Zoology's training mix and (T, N) of its test configurations.
ZOOLOGY_TRAIN = ((64, 4, 100_000), (128, 8, 20_000), (256, 16, 20_000), (256, 32, 20_000), (256, 64, 20_000))
ZOOLOGY_TEST = ((64, 4), (64, 8), (64, 16), (128, 32), (256, 64), (512, 128), (1024, 256))


class MixPoint(int):
    """A training draw of the mix: the number of pairs N (an int, the knob) carrying its own sequence length."""

    seq_len: int

    def __new__(cls, pairs: int, seq_len: int) -> MixPoint:
        point = super().__new__(cls, pairs)
        point.seq_len = seq_len
        return point


def power_law_gaps(batch: int, space: int, n: int, power_a: float, g: torch.Generator) -> torch.Tensor:
    """n distinct gaps per row from 0..space-1, P(gap) ~ (gap + 1)^(power_a - 1), drawn without replacement
    (numpy's `choice(replace=False, p=...)`, as Zoology calls it: successive draws renormalised)."""
    weights = torch.arange(1, space + 1, dtype=torch.float64, device=g.device) ** (power_a - 1)
    return torch.multinomial(weights.expand(batch, space), n, replacement=False, generator=g)


class MQAR(ClassificationTask):
    version = 2  # 1: uniform query positions, filler 0, values with replacement, N 4..16 at T 64
    input_kind = "tokens"
    presets: ClassVar[dict[str, dict]] = {
        # eval 32 per configuration: logits at (1024, 256) with V = 8192 take 1 GiB per 32 sequences
        "quick": {"steps": 2000, "batch_size": 32, "eval_every": 200, "eval_size": 32},
        "paper": {"steps": 20_000, "batch_size": 64, "eval_every": 1000, "eval_size": 1000},
    }

    def __init__(
        self,
        vocab: int = 8192,
        variant: Literal["zoology", "seqbench"] = "zoology",
        power_a: float = 0.01,
        seq_len: int = 64,
        min_pairs: int = 4,
        max_pairs: int = 16,
        eval_lengths: tuple[int, ...] | None = None,
    ) -> None:
        if variant not in ("zoology", "seqbench"):
            raise OptionsError(f"mqar: variant must be 'zoology' or 'seqbench', got {variant!r}.")
        if not 0 < power_a <= 1:
            raise OptionsError(f"mqar: power_a must be in (0, 1], got {power_a}.")
        self.vocab, self.variant, self.power_a, self.seq_len = vocab, variant, power_a, seq_len
        if variant == "zoology":
            self.mix = ZOOLOGY_TRAIN
            self.train_lengths = (min(n for _, n, _ in self.mix), max(n for _, n, _ in self.mix))
            lengths = tuple(eval_lengths) if eval_lengths else tuple(n for _, n in ZOOLOGY_TEST)
        else:
            if not 1 <= min_pairs <= max_pairs:
                raise OptionsError(f"mqar: need 1 <= min_pairs <= max_pairs, got {min_pairs}..{max_pairs}.")
            self.train_lengths = (min_pairs, max_pairs)
            lengths = tuple(eval_lengths) if eval_lengths else (16, 32, 64)
        self.eval_lengths = tuple(sorted(set(lengths) | {self.train_lengths[1]}))
        most = max(self.eval_lengths)
        if vocab // 2 - 1 < most:
            raise OptionsError(f"mqar: {most} distinct keys need vocab >= {2 * (most + 1)}, got {vocab}.")
        if variant == "zoology" and vocab <= self.length_of(most):
            raise OptionsError(
                f"mqar: Zoology needs vocab > sequence length {self.length_of(most)}, got {vocab}."
            )
        self.input_size = self.output_size = vocab

    def length_of(self, pairs: int) -> int:
        """The sequence length T for N pairs: Zoology's test configurations (max(64, 4N)), or seqbench's rule."""
        return max(64, 4 * pairs) if self.variant == "zoology" else max(self.seq_len, 4 * pairs)

    def sample_length(self, generator: torch.Generator) -> int:
        if self.variant != "zoology":
            return super().sample_length(generator)
        weights = torch.tensor([float(e) for _, _, e in self.mix], device=generator.device)
        i = int(torch.multinomial(weights, 1, generator=generator).item())
        T, N, _ = self.mix[i]
        return MixPoint(N, T)

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        T = getattr(length, "seq_len", None) or self.length_of(int(length))
        if self.variant == "seqbench":
            return self._sample_v1(batch_size, int(length), T, generator)
        g, dev, B, N, V = generator, generator.device, batch_size, int(length), self.vocab
        half = V // 2
        # Distinct keys and values: the N largest of uniform keys are a uniform subset, in random order.
        keys = torch.rand(B, half - 1, generator=g, device=dev).topk(N, dim=1).indices + 1
        values = torch.rand(B, V - half, generator=g, device=dev).topk(N, dim=1).indices + half
        gaps = power_law_gaps(B, (T - 2 * N) // 2, N, self.power_a, g)  # (B, N)
        slots = 2 * N + 2 * gaps  # query positions: even offsets after the pairs
        inputs = torch.randint(0, V, (B, T), generator=g, device=dev)  # random non-queries
        inputs[:, 0 : 2 * N : 2], inputs[:, 1 : 2 * N : 2] = keys, values
        inputs.scatter_(1, slots, keys)
        targets = torch.zeros(B, T, dtype=torch.long, device=dev)
        targets.scatter_(1, slots, values)
        mask = torch.zeros(B, T, dtype=torch.bool, device=dev)
        mask.scatter_(1, slots, True)
        return Batch(inputs, targets, mask)

    def _sample_v1(self, B: int, N: int, T: int, g: torch.Generator) -> Batch:
        dev, half = g.device, self.vocab // 2
        keys = torch.rand(B, half - 1, generator=g, device=dev).argsort(dim=1)[:, :N] + 1
        values = torch.randint(half, self.vocab, (B, N), generator=g, device=dev)
        inputs = torch.zeros(B, T, dtype=torch.long, device=dev)  # filler 0
        inputs[:, 0 : 2 * N : 2], inputs[:, 1 : 2 * N : 2] = keys, values
        slots = torch.rand(B, T - 2 * N, generator=g, device=dev).argsort(dim=1)[:, :N] + 2 * N
        inputs.scatter_(1, slots, keys)
        targets = torch.zeros(B, T, dtype=torch.long, device=dev)
        targets.scatter_(1, slots, values)
        mask = torch.zeros(B, T, dtype=torch.bool, device=dev)
        mask.scatter_(1, slots, True)
        return Batch(inputs, targets, mask)

    def read_positions(self, batch: Batch) -> torch.Tensor:
        """The query positions: the loss and both variants' metrics read nothing else."""
        return batch.mask

    @torch.no_grad()
    def metrics(self, outputs: torch.Tensor, batch: Batch) -> dict[str, float]:
        if self.variant == "seqbench":
            return super().metrics(outputs, batch)
        m = batch.mask
        right = ((outputs.argmax(-1) == batch.targets) & m).sum(1)
        return {
            "accuracy": (right / m.sum(1)).mean().item(),  # Zoology: per sequence, then the mean
            "sequence_accuracy": (right == m.sum(1)).float().mean().item(),
        }

    def summary(self, by_length: dict[int, dict[str, float]]) -> dict[str, float]:
        """Zoology's `valid/accuracy`: the mean over its test configurations (equal sizes); seqbench's form
        keeps the longest training N."""
        if self.variant == "seqbench" or set(by_length) != set(self.eval_lengths):
            return super().summary(by_length)  # (or a run stopped before its final evaluation)
        out = {
            k: sum(m[k] for m in by_length.values()) / len(by_length) for k in next(iter(by_length.values()))
        }
        out["train_length_accuracy"] = by_length[self.train_length]["accuracy"]
        return out

    def chance(self, length: int) -> dict[str, float]:
        if self.variant == "seqbench":
            return {"accuracy": (2 / self.vocab) ** length, "token_accuracy": 2 / self.vocab}
        return {"accuracy": 2 / self.vocab, "sequence_accuracy": (2 / self.vocab) ** length}
