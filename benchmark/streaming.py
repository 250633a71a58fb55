"""Streams: an episodic task's episodes back to back, one unending sequence per batch row.

`StreamingTask(task, episodes)` samples `episodes` episodes of the wrapped task at one length and lays them
end to end in time; the runner carries the model's state from one sampled chunk to the next (the trainer
holds it, detached), so the state is never reset during training. This is the regime truncated BPTT and
RTRL exist for: no episode boundary tells the model to forget, and a trainer sees the stream only as it
passes.

Worked example: copy_memory with T = 2 and 2 symbols to copy (each episode 6 steps: 2 symbols, T-1 blanks,
the delimiter, 2 answer steps), 2 episodes per chunk, one row:

    step       1  2  3  4  5  6 | 7  8  9 10 11 12      chunk 1          then chunk 2 continues ...
    input      3  5  0  9  0  0 | 1  4  0  9  0  0
    target     0  0  0  0  3  5 | 0  0  0  0  1  4
    episode    ------ 1 ------- | ------ 2 -------

Metrics are computed per episode inside the stream (the wrapped task's metrics on each episode's slice,
then averaged over episodes), so `accuracy` means the same as on episodes. The loss is the wrapped task's
over the chunk's scored positions. Evaluation runs a fixed stream: at each evaluation length, `episodes`
episodes per row from the runner's fixed evaluation seed, from the model's initial state, never reset.
Wrapped tasks must score with a mask-weighted mean (every built-in does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, Task

#: Tasks the stream is documented and tested for; any task of the same contract works.
STREAMABLE = ("copy_memory", "adding", "copy")


@dataclass
class StreamBatch(Batch):
    """A chunk of a stream: `episode_steps` steps per episode, `inputs.shape[1] // episode_steps` episodes."""

    episode_steps: int = 0

    def to(self, device: torch.device | str) -> StreamBatch:
        return StreamBatch(
            self.inputs.to(device), self.targets.to(device), self.mask.to(device), self.episode_steps
        )

    def episodes(self) -> list[Batch]:
        E = self.episode_steps or self.steps
        return [
            Batch(self.inputs[:, a : a + E], self.targets[:, a : a + E], self.mask[:, a : a + E])
            for a in range(0, self.steps, E)
        ]


class StreamingTask(Task):
    """`task`'s episodes, `episodes` per sampled chunk, back to back."""

    def __init__(self, task: Task, episodes: int) -> None:
        if episodes < 1:
            raise OptionsError(f"A stream needs at least 1 episode per chunk, got {episodes}.")
        self.task, self.episodes = task, episodes
        for attr in (
            "input_kind",
            "input_size",
            "output_size",
            "train_lengths",
            "eval_lengths",
            "stochastic",
        ):
            setattr(self, attr, getattr(task, attr))

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> StreamBatch:
        parts = [self.task.sample(batch_size, length, generator) for _ in range(self.episodes)]
        return StreamBatch(
            torch.cat([p.inputs for p in parts], 1),
            torch.cat([p.targets for p in parts], 1),
            torch.cat([p.mask for p in parts], 1),
            parts[0].steps,
        )

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.task.loss(outputs, batch)

    @torch.no_grad()
    def metrics(self, outputs: torch.Tensor, batch: Batch) -> dict[str, float]:
        """The wrapped task's metrics on every episode, averaged over episodes; plus the first and last
        episode's accuracy (a stream-trained model that only works from a fresh state shows it here)."""
        if not isinstance(batch, StreamBatch):
            return self.task.metrics(outputs, batch)
        E = batch.episode_steps
        per = [
            self.task.metrics(outputs[:, a : a + E], ep)
            for a, ep in zip(range(0, batch.steps, E), batch.episodes(), strict=True)
        ]
        out = {k: sum(m[k] for m in per) / len(per) for k in per[0]}
        out["accuracy_first_episode"] = per[0]["accuracy"]
        out["accuracy_last_episode"] = per[-1]["accuracy"]
        return out

    def chance(self, length: int) -> dict[str, float]:
        return self.task.chance(length)

    def solved(self, metrics: dict[str, float], threshold: float) -> bool:
        return self.task.solved(metrics, threshold)

    def sample_length(self, generator: torch.Generator) -> int:
        return self.task.sample_length(generator)

    def __getattr__(self, name: str) -> Any:  # the wrapped task's knobs (T, symbols, ...) read through
        if name == "task":
            raise AttributeError(name)
        return getattr(self.task, name)
