"""Streams: episodes back to back, metrics per episode, the contract of a task."""

from __future__ import annotations

import pytest
import torch

import seqbench
from seqbench.streaming import STREAMABLE, StreamBatch, StreamingTask
from seqbench.testing import check_task

SMALL = {
    "copy_memory": {"T": 4, "copy_length": 3},
    "adding": {"T": 6},
    "copy": {"max_length": 4, "eval_lengths": (2, 6)},
}


@pytest.mark.parametrize("name", STREAMABLE)
def test_a_stream_is_a_task(name):
    check_task(StreamingTask(seqbench.load_task(name, **SMALL[name]), episodes=3))


@pytest.mark.parametrize("name", STREAMABLE)
def test_episodes_back_to_back(name):
    task = seqbench.load_task(name, **SMALL[name])
    stream = StreamingTask(task, episodes=3)
    length = task.train_lengths[1]
    chunk = stream.sample(2, length, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    episodes = [task.sample(2, length, gen) for _ in range(3)]
    assert isinstance(chunk, StreamBatch) and chunk.steps == 3 * episodes[0].steps
    for got, want in zip(chunk.episodes(), episodes, strict=True):
        for f in ("inputs", "targets", "mask"):
            assert torch.equal(getattr(got, f), getattr(want, f))


def test_metrics_are_per_episode():
    task = seqbench.load_task("copy_memory", **SMALL["copy_memory"])
    stream = StreamingTask(task, episodes=2)
    chunk = stream.sample(4, 4, torch.Generator().manual_seed(0))
    perfect = torch.nn.functional.one_hot(chunk.targets, task.output_size).float() * 10
    wrong_second = perfect.clone()
    E = chunk.episode_steps
    wrong_second[:, E:] = perfect[:, E:].roll(1, dims=-1)  # every answer of episode 2 wrong
    assert stream.metrics(perfect, chunk)["accuracy"] == 1.0
    m = stream.metrics(wrong_second, chunk)
    assert m["accuracy"] == 0.5 and m["accuracy_first_episode"] == 1.0 and m["accuracy_last_episode"] == 0.0
    assert stream.copy_length == 3  # the wrapped task's knobs read through
