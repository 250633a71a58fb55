"""Forecasting a noisy chaotic series: predict x(t + k) from x(1..t), on the Mackey-Glass system
(Mackey & Glass 1977; the classic benchmark of Jaeger & Haas 2004).

    dx/dt = β x(t - τ) / (1 + x(t - τ)^p) - γ x(t),   β = 0.2, γ = 0.1, p = 10, τ = 17 (chaotic)

in its discrete-time form (one Euler step of 1 per time unit, chaotic at τ = 17), from a random constant
history, after a burn-in, plus Gaussian observation noise. (Euler steps of 0.1 made generation take 0.55 s
per batch of 32 x 210 here, more than a training step; the discrete map takes a tenth of that.) At every step t the model predicts the clean x(t + k) (k = `horizon`);
steps whose target would lie beyond the sequence are ignored. Loss: MSE. The primary `accuracy` is the
fraction of predictions within `tolerance` of the target; `mse` is reported beside the persistence
baseline (predict x(t + k) = observed x(t)), whose figures are the chance level.

Worked example, k = 2 (`.`: ignored):

    step     1     2     3     4     5
    input   0.91  0.95  1.02  1.10  1.13     (noisy observations)
    target  1.02  1.10  1.13   .     .      (clean x(t + 2))
    mask     1     1     1     0     0

The knob `length` is the sequence length; the horizon stays fixed.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from seqbench.errors import OptionsError
from seqbench.tasks.base import Batch, Task

_BETA, _GAMMA, _POWER = 0.2, 0.1, 10


def mackey_glass(
    batch: int, steps: int, generator: torch.Generator, tau: int = 17, burn_in: int = 100
) -> torch.Tensor:
    """(batch, steps) discrete-time Mackey-Glass series, each from its own random constant history."""
    x = [0.5 + torch.rand(batch, generator=generator, device=generator.device) * 0.9] * (tau + 1)
    for _ in range(burn_in + steps):
        x_now, x_lag = x[-1], x[-1 - tau]
        x.append(x_now + _BETA * x_lag / (1 + x_lag**_POWER) - _GAMMA * x_now)
    return torch.stack(x[-steps:], dim=1)


class Forecast(Task):
    presets: ClassVar[dict[str, dict]] = {
        "quick": {"steps": 1500, "batch_size": 32, "eval_every": 100, "eval_size": 128},
        "paper": {"steps": 20_000, "batch_size": 32, "eval_every": 500, "eval_size": 512},
    }

    def __init__(
        self,
        length: int = 200,
        horizon: int = 10,
        noise: float = 0.01,
        tolerance: float = 0.05,
        eval_lengths: tuple[int, ...] | None = None,
    ) -> None:
        lengths = tuple(sorted(set(eval_lengths or (length, 2 * length, 4 * length)) | {length}))
        if horizon < 1 or min(lengths) <= horizon:
            raise OptionsError(
                f"forecast: need horizon >= 1 and every length > horizon, got {horizon}, {lengths}."
            )
        self.horizon, self.noise, self.tolerance = horizon, noise, tolerance
        self.input_size = self.output_size = 1
        self.train_lengths = (length, length)
        self.eval_lengths = lengths

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        k = self.horizon
        clean = mackey_glass(batch_size, length + k, generator)  # (B, T + k)
        noisy = clean[:, :length] + self.noise * torch.randn(
            batch_size, length, generator=generator, device=generator.device
        )
        targets = clean[:, k : length + k].unsqueeze(-1)  # (B, T, 1): x(t + k)
        mask = torch.ones(batch_size, length, dtype=torch.bool, device=generator.device)
        mask[:, length - k :] = False  # ... whose target lies beyond the observed sequence
        return Batch(noisy.unsqueeze(-1), targets, mask)

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return ((outputs - batch.targets)[batch.mask] ** 2).mean()

    @torch.no_grad()
    def metrics(self, outputs: torch.Tensor, batch: Batch) -> dict[str, float]:
        err = (outputs - batch.targets)[batch.mask]
        persistence = (batch.inputs - batch.targets)[batch.mask]
        return {
            "accuracy": (err.abs() < self.tolerance).float().mean().item(),
            "mse": (err**2).mean().item(),
            "persistence_mse": (persistence**2).mean().item(),
        }

    def chance(self, length: int) -> dict[str, float]:
        """The persistence baseline, measured on a fixed batch (no closed form for a chaotic series)."""
        batch = self.sample(64, length, torch.Generator().manual_seed(0))
        m = self.metrics(batch.inputs, batch)
        return {"accuracy": m["accuracy"], "mse": m["mse"]}
