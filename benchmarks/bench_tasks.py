"""Batch generation of every registered task at its longest training length, beside one LSTM training step
on that batch (hidden 128, Adam): how much of a step generating data costs."""

from __future__ import annotations

import pytest
import torch

import seqbench
from seqbench.network import build_network
from seqbench.registry import TASKS


@pytest.fixture(params=TASKS.names())
def task(request: pytest.FixtureRequest):
    return request.param, seqbench.load_task(request.param)


def test_sample(benchmark, task, sizes):
    name, t = task
    length = max(t.train_lengths)
    gen = torch.Generator().manual_seed(0)
    benchmark.group = "task.sample"
    benchmark.extra_info.update(task=name, length=length)
    benchmark(t.sample, sizes["batch"], length, gen)


def test_lstm_step_on_the_batch(benchmark, task, sizes):
    name, t = task
    batch = t.sample(sizes["batch"], max(t.train_lengths), torch.Generator().manual_seed(0))
    net = build_network(t, "lstm", 128, {})
    opt = torch.optim.Adam(net.parameters(), 1e-3)

    def step() -> None:
        loss = t.loss(net(batch.inputs), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    benchmark.group = "lstm step on the task's batch"
    benchmark.extra_info.update(task=name, steps=batch.steps)
    benchmark(step)
