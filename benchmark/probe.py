"""`seqbench probe`: the vanishing-gradient picture. How strongly does the loss at the last answer step
reach back to the input at each earlier step?

For a batch at the task's longest training length, the loss is restricted to the last position the task
scores, and the gradient of that loss with respect to the model's input at every step t is measured:
g_t = mean over sequences of ||∂L_final / ∂x_t||. The model contract exposes no hidden state, so the input
(after the read-in: the embedding for token tasks) stands in for it; for a recurrent model ∂L/∂x_t is the
gradient reaching the hidden state at t seen through the input weights, and it decays with the distance
T - t exactly as the hidden-state gradient does. Measured at initialisation and after `steps` training
steps; the result is stored under results/probes/ and drawn by `seqbench report`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import torch

from seqbench.provenance import provenance
from seqbench.store import new_run_id
from seqbench.training import bare_training, training_config


def last_scored(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of each sequence's last position the mask (B, T) scores."""
    return (mask.long() * torch.arange(mask.shape[1], device=mask.device)).argmax(dim=1)


def final_step_batch(batch: Any) -> Any:
    """The same batch with the loss mask keeping only each sequence's last scored position."""
    mask = batch.mask
    last = last_scored(mask)
    only_last = torch.zeros_like(mask)
    only_last[torch.arange(mask.shape[0], device=mask.device), last] = True
    return dataclasses.replace(batch, mask=only_last & mask)


def gradient_profile(net: torch.nn.Module, task: Any, batch: Any) -> torch.Tensor:
    """(T,) mean over the batch of ||∂L_final/∂x_t|| for every step t (x = the core's input)."""
    was_training = net.training
    net.eval()
    x = net.read_in(batch.inputs).detach().requires_grad_(True)
    out = net.read_out(net.core(x))
    loss = task.loss(out, final_step_batch(batch))
    (grad,) = torch.autograd.grad(loss, x)
    net.train(was_training)
    return grad.norm(dim=-1).mean(dim=0).detach().cpu()


def probe(
    task: str = "adding",
    model: str = "lstm",
    steps: int = 500,
    seed: int = 0,
    task_options: dict[str, Any] | None = None,
    model_options: dict[str, Any] | None = None,
    hidden_size: int | None = None,
    device: str = "cpu",
    batch_size: int = 64,
) -> list[dict[str, Any]]:
    """Gradient profiles at initialisation and after `steps` training steps (quick preset otherwise)."""
    config = training_config(
        task,
        model,
        device,
        steps,
        task_options=task_options,
        model_options=model_options,
        seed=seed,
        hidden_size=hidden_size,
    )
    profiles: dict[str, torch.Tensor] = {}
    fixed: dict[str, Any] = {}

    def at_init(training: Any) -> None:
        net, task_obj = training.net, training.task
        gen = torch.Generator(device=next(net.parameters()).device).manual_seed(12345)
        fixed["batch"] = task_obj.sample(batch_size, task_obj.train_length, gen)
        profiles["init"] = gradient_profile(net, task_obj, fixed["batch"])

    training, _ = bare_training(config, steps, on_built=at_init)
    net, task_obj = training.net, training.task
    profiles["trained"] = gradient_profile(net, task_obj, fixed["batch"])
    mask = fixed["batch"].mask
    last = int(last_scored(mask).max())
    probe_id = new_run_id()
    made = provenance(next(net.parameters()).device)
    rows = []
    for stage, g in profiles.items():
        ref = float(g[last]) or float("nan")
        for t in range(last + 1):
            rows.append(
                {
                    **made,
                    "probe_id": probe_id,
                    "task": task,
                    "task_options": json.dumps(config.task_options, sort_keys=True),
                    "model": model,
                    "model_options": json.dumps(config.model_options, sort_keys=True),
                    "hidden_size": config.train.hidden_size,
                    "seed": seed,
                    "stage": stage,
                    "steps_trained": 0 if stage == "init" else steps,
                    "length": task_obj.train_length,
                    "step": t,
                    "distance": last - t,
                    "grad_norm": float(g[t]),
                    "relative": float(g[t]) / ref,
                }
            )
    return rows
