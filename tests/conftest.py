from __future__ import annotations

import pytest
import torch

from seqbench.registry import MODELS, TASKS
from tests.fakes import FakeEntryPoint


@pytest.fixture(autouse=True)
def _one_thread():
    # Tests use tiny sizes; one thread keeps them fast and stable on a shared 2-core box.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def extra_entry_points():
    """Add fake providers to the live TASKS / MODELS registries for one test: `add(registry, *eps)`."""
    originals = {TASKS: TASKS._entry_points, MODELS: MODELS._entry_points}

    def add(registry, *eps: FakeEntryPoint) -> None:
        base = originals[registry]
        registry._entry_points = lambda: [*base(), *eps]
        registry.refresh()

    yield add
    for registry, fn in originals.items():
        registry._entry_points = fn
        registry.refresh()
