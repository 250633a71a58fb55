"""Stand-ins that tests register through fake entry points (no package needs installing)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from seqbench.tasks.base import Batch, Task


class FakeEntryPoint:
    """Quacks like importlib.metadata.EntryPoint, with a distribution name and version."""

    def __init__(self, name: str, value: str, package: str = "fake-plugin", version: str = "1.2.3") -> None:
        self.name, self.value = name, value
        self.dist = SimpleNamespace(name=package, version=version)


class NaNModel(nn.Module):
    """Returns NaN: the run must end as `diverged`."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.lin = nn.Linear(input_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * float("nan")


class ExplodingModel(NaNModel):
    """Raises inside forward after `after` calls: the run must end as `error` (or `interrupted`)."""

    calls = 0
    after = 3
    exc: type[BaseException] = RuntimeError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        if type(self).calls > self.after:
            raise self.exc("boom inside the model")
        return self.lin(x)


class ConstantTask(Task):
    """A task that every model has solved already: accuracy is always 1."""

    def __init__(self, width: int = 2) -> None:
        self.input_size = self.output_size = width
        self.train_lengths = (2, 3)
        self.eval_lengths = (3, 6)

    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        x = torch.rand(batch_size, length, self.input_size, generator=generator, device=generator.device)
        return Batch(x, x.clone(), torch.ones(batch_size, length, dtype=torch.bool, device=x.device))

    def loss(self, outputs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return ((outputs - batch.targets) ** 2)[batch.mask].mean()

    def metrics(self, outputs: torch.Tensor, batch: Batch) -> dict[str, float]:
        return {"accuracy": 1.0}


BROKEN_IMPORT = "tests.does_not_exist:Model"


class SuicideModel(NaNModel):
    """Kills its own process in forward (SIGKILL): what an out-of-memory kill looks like to a sweep."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
        return self.lin(x)
