from __future__ import annotations

import pytest
import torch

from seqbench.models import cpp_loops
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


@pytest.fixture
def use_loops(monkeypatch):
    """`use_loops("cpp" | "python")`: make the models with time loops of their own (the shared LSTM cell,
    depth_gated_lstm, gru_cho, grid_lstm) run their C++ loops or their Python ones for one test. The C++ loops must be
    there when SEQBENCH_LSTM_KERNEL=cpp (as in .ci/run); elsewhere a machine without a compiler skips the
    tests that ask for them."""

    def use(loops: str) -> None:
        must = cpp_loops.choice() == "cpp"
        if loops == "cpp" and not must and (cpp_loops.choice() == "python" or cpp_loops.load() is None):
            pytest.skip("the C++ loops of the LSTM cell are not built here")
        monkeypatch.setenv(cpp_loops.ENV, loops)

    return use
