"""Fixtures and options of the micro-benchmark suite (pytest-benchmark), parametrised over the registries.

    python -m pytest benchmarks --benchmark-only                        # every model's train step, every task
    python -m pytest benchmarks --benchmark-only --bench-hidden 256 --bench-length 500
    python -m pytest benchmarks --benchmark-only --benchmark-autosave   # save as the baseline ...
    python -m pytest benchmarks --benchmark-only --benchmark-compare    # ... and compare a later run with it

Sizes default to `seqbench bench`'s smallest (batch 32, 16 inputs, hidden 128, length 100), one torch thread
(two threads swing wildly on a shared machine). The measured functions are `seqbench.bench`'s own, so the
figures mean what the bench's figures mean.
"""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("seqbench")
    group.addoption("--bench-hidden", type=int, default=128, help="hidden size of every model (128)")
    group.addoption("--bench-length", type=int, default=100, help="sequence length (100)")
    group.addoption("--bench-batch", type=int, default=32, help="batch size (32)")
    group.addoption("--bench-threads", type=int, default=1, help="torch threads (1)")
    # bench_mixers.py, the backbone mixers' speed targets (issues 14 and 15): off unless asked for
    group.addoption("--bench-mixers", action="store_true", help="run bench_mixers.py's speed targets")
    group.addoption("--bench-mixer-lengths", default="100,1000,2000", help="lengths (100,1000,2000)")
    group.addoption("--bench-mixer-rounds", type=int, default=3, help="rounds (3; halved from T 1000)")
    group.addoption("--bench-mixer-models", default="", help="comma-separated models (every mixer model)")


@pytest.fixture(scope="session")
def sizes(request: pytest.FixtureRequest) -> dict[str, int]:
    opt = request.config.getoption
    return {
        "hidden": opt("--bench-hidden"),
        "length": opt("--bench-length"),
        "batch": opt("--bench-batch"),
        "inputs": 16,
    }


@pytest.fixture(autouse=True, scope="session")
def _threads(request: pytest.FixtureRequest):
    before = torch.get_num_threads()
    torch.set_num_threads(request.config.getoption("--bench-threads"))
    yield
    torch.set_num_threads(before)
