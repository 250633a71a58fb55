"""The one training step: what it computes, and that the runner and the bare loop take the same steps."""

from __future__ import annotations

import math

import torch

from seqbench.config import make_run_config
from seqbench.runner import resolve_device, run
from seqbench.store import read_curves
from seqbench.training import TRAINERS, Training, bare_training, clip_gradients, trainer_for


def _training(model: str = "gru", **train) -> tuple[Training, torch.Generator]:
    config = make_run_config("copy", model, preset="smoke", **train)
    training = Training.build(config, config.make_task(), resolve_device("cpu"))
    return training, torch.Generator().manual_seed(config.seed)


def test_a_step_is_full_bptt_with_clipping():
    training, gen = _training(clip="value", clip_value=0.01)
    batch = training.sample(gen)
    # By hand, on a copy of the network: forward, masked loss, backward, clip, optimiser step.
    twin, _ = _training(clip="value", clip_value=0.01)
    loss = twin.task.loss(twin.net(batch.inputs), batch)
    twin.optimizer.zero_grad()
    loss.backward()
    clip_gradients(twin.params, twin.config)
    assert max(float(p.grad.abs().max()) for p in twin.params) <= 0.01
    twin.optimizer.step()
    assert training.step(batch) == loss.item()
    for p, q in zip(training.params, twin.params, strict=True):
        assert torch.equal(p, q)


def test_bptt_is_the_built_in_trainer():
    training, _ = _training()
    assert isinstance(trainer_for(training.config), TRAINERS["bptt"]) and training.trainer.name == "bptt"


def test_the_runner_and_the_bare_loop_take_the_same_steps(tmp_path):
    config = make_run_config("copy", "gru", preset="smoke", steps=3, eval_every=3)
    training, _ = bare_training(config, 0)  # built as the runner builds it, no steps yet
    gen = torch.Generator().manual_seed(config.seed)
    losses = [training.step(training.sample(gen)) for _ in range(3)]
    row = run(config, tmp_path)
    curve = read_curves(tmp_path)
    mean = curve[(curve["split"] == "train") & (curve["step"] == 3)]["value"].iloc[0]
    assert row["steps"] == 3 and math.isclose(mean, sum(losses) / 3, rel_tol=1e-6)
