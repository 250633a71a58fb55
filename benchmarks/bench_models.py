"""Train step (forward + backward) and inference of every registered model and of PyTorch's fused modules.

One benchmark per model, grouped by size, so pytest-benchmark's table sets each model beside nn.LSTM, nn.GRU
and nn.RNN of the same size measured in the same session; `--benchmark-compare` sets a run beside a saved one
(a change that made a model slower shows as a higher ratio). New models, plugins included, join by being
registered.
"""

from __future__ import annotations

import pytest
import torch

from seqbench import bench
from seqbench.registry import MODELS

NAMES = [*bench.TORCH_MODULES, *MODELS.names()]


@pytest.fixture(params=NAMES)
def model_and_input(request: pytest.FixtureRequest, sizes: dict[str, int]):
    torch.manual_seed(0)
    model = bench.build(request.param, sizes["inputs"], sizes["hidden"])
    x = torch.randn(sizes["batch"], sizes["length"], sizes["inputs"])
    bench.train_step(model, x)  # warm-up: first-use builds (C++ loops, oneDNN primitives) stay out
    return request.param, model, x


def test_train_step(benchmark, model_and_input, sizes):
    name, model, x = model_and_input
    benchmark.group = f"train step H{sizes['hidden']} T{sizes['length']} B{sizes['batch']}"
    benchmark.extra_info.update(model=name, tokens=x.shape[0] * x.shape[1])
    benchmark(bench.train_step, model, x)


def test_inference(benchmark, model_and_input, sizes):
    name, model, x = model_and_input
    benchmark.group = f"inference H{sizes['hidden']} T{sizes['length']} B{sizes['batch']}"
    benchmark.extra_info.update(model=name, tokens=x.shape[0] * x.shape[1])

    def infer() -> None:
        with torch.no_grad():
            model(x)

    benchmark(infer)
