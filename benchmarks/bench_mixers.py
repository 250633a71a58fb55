"""The backbone mixers' speed targets (issues 14 and 15) in one pytest-benchmark session, one torch thread:

1. the parallel (scan, chunked, FFT) form's train step against the recurrent form's at the longest length,
   twice: the whole model stepped one step at a time with `model.step` (the specification: every layer's
   norms, projections and MLP run per step too), and the mixer alone, `mixer(u)` against
   `mixer.recurrent_scan(u, state)` on its own input (B, T, d), without the backbone's MLP and norms, which
   cost the same in both forms and bound the whole model's ratio;
2. the parallel form against a torch.nn.LSTM with the model's number of parameters, at every length;
3. the parallel form's time exponent in T over the lengths (least squares, `seqbench.bench.fit_exponent`).

    python -m pytest benchmarks/bench_mixers.py --benchmark-only --bench-mixers [--bench-batch 32] \\
        [--bench-mixer-lengths 100,1000,2000] [--bench-mixer-rounds 3] [--bench-mixer-models mamba,s4d] \\
        --benchmark-json mixer-speed.json
    python benchmarks/mixer_tables.py mixer-speed.json > mixer-speed.md

Skipped unless `--bench-mixers` is given (a T = 2000 recurrent train step takes seconds per model), so that
`pytest benchmarks --benchmark-only` stays the per-model suite. Every train step is forward and backward
under a mean-square loss, as `seqbench.bench.train_step`. Each case's rounds run back to back; cases are
ordered model by model, length by length, so the forms compared with each other are timed minutes apart
at most. Each case records the load average when it ran (`extra_info`), since the figures are only as quiet
as the machine was.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import cache
from typing import Any

import pytest
import torch

import seqbench
from seqbench.models.backbone import Mixer, MixerModel
from seqbench.registry import MODELS

INPUTS = 16
# A nonlinear recurrence has one form, its loop (sLSTM: h_{t-1} enters the gates): no ratio to measure.
RECURRENT_ONLY = {"slstm"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" not in metafunc.fixturenames:
        return
    opt = metafunc.config.getoption
    if not opt("--bench-mixers"):
        metafunc.parametrize("case", [])  # one skipped item: the targets run only with --bench-mixers
        return
    lengths = [int(t) for t in opt("--bench-mixer-lengths").split(",")]
    chosen = opt("--bench-mixer-models")
    names = chosen.split(",") if chosen else mixer_models()
    cases = []
    for name in names:
        recurrent = MODELS.get(name)(INPUTS, 8).recurrent and name not in RECURRENT_ONLY
        for T in lengths:
            forms = ["parallel", "nn.LSTM"]
            longest = max(lengths) == T
            if longest and name not in RECURRENT_ONLY:
                forms += ["mixer parallel"]
                if recurrent:
                    forms += ["recurrent", "mixer recurrent"]
            cases += [(name, T, form) for form in forms]
    metafunc.parametrize("case", cases, ids=[f"{n}-T{T}-{f.replace(' ', '_')}" for n, T, f in cases])


def mixer_models() -> list[str]:
    """Every registered model built on the block backbone (the transformer included, as a reference)."""
    return [n for n in MODELS.names() if issubclass(MODELS.get(n), MixerModel)]


def lstm_like(params: int, inputs: int) -> torch.nn.LSTM:
    """A one-layer nn.LSTM with about `params` parameters: 4 (H·I + H² + 2H) = params, solved for H."""
    b = inputs + 2
    H = max(1, round((-b + math.sqrt(b * b + params)) / 2))
    return torch.nn.LSTM(inputs, H, batch_first=True)


@cache
def built(name: str, hidden: int) -> tuple[MixerModel, torch.nn.LSTM]:
    torch.manual_seed(0)
    model = seqbench.load_model(name, INPUTS, hidden)
    return model, lstm_like(sum(p.numel() for p in model.parameters()), INPUTS)


def stepped(model: MixerModel, x: torch.Tensor) -> torch.Tensor:
    """The whole model's recurrent form: `model.step` over x (B, T, I), one step at a time."""
    state = model.initial_state(x.shape[0], x.device, x.dtype)
    hs = []
    for x_t in x.unbind(1):
        h, state = model.step(x_t, state)
        hs.append(h)
    return torch.stack(hs, 1)


def train_step(module: torch.nn.Module, run: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        module.zero_grad(set_to_none=True)
        run().square().mean().backward()

    return step


def step_of(form: str, model: MixerModel, lstm: torch.nn.LSTM, x: torch.Tensor, u: torch.Tensor):
    mixer: Mixer = model.blocks[0].mixer
    if form == "parallel":
        return train_step(model, lambda: model(x))
    if form == "recurrent":
        return train_step(model, lambda: stepped(model, x))
    if form == "nn.LSTM":
        return train_step(lstm, lambda: lstm(x)[0])
    if form == "mixer parallel":
        return train_step(mixer, lambda: mixer(u))
    if form == "mixer recurrent":
        return train_step(
            mixer, lambda: mixer.recurrent_scan(u, mixer.initial_state(*u.shape[:1], u.device, u.dtype))[0]
        )
    raise ValueError(form)


def test_mixer_train_step(benchmark: Any, case: tuple[str, int, str], sizes: dict[str, int], request) -> None:
    opt = request.config.getoption
    name, T, form = case
    hidden, batch = sizes["hidden"], sizes["batch"]
    model, lstm = built(name, hidden)
    torch.manual_seed(1)
    x = torch.randn(batch, T, INPUTS)
    u = torch.randn(batch, T, hidden, requires_grad=True)
    step = step_of(form, model, lstm, x, u)
    step_of(form, model, lstm, x[:, :16], u[:, :16].detach().requires_grad_())()  # warm-up, first-use builds
    rounds = opt("--bench-mixer-rounds")
    if form.endswith("recurrent") or T >= 1000:
        rounds = max(1, rounds // 2)
    benchmark.group = f"{name} H{hidden} B{batch}"
    benchmark.extra_info.update(
        model=name,
        T=T,
        form=form,
        hidden=hidden,
        batch=batch,
        params=sum(p.numel() for p in model.parameters()),
        lstm_hidden=lstm.hidden_size,
        lstm_params=sum(p.numel() for p in lstm.parameters()),
        mixer_params=sum(p.numel() for p in model.blocks[0].mixer.parameters()),
        recurrent=bool(model.recurrent),
        recurrent_only=name in RECURRENT_ONLY,
        version=int(getattr(type(model), "version", 1)),
        loadavg_before=os.getloadavg()[0],
        torch=torch.__version__,
        threads=torch.get_num_threads(),
    )
    benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=0)
    benchmark.extra_info["loadavg_after"] = os.getloadavg()[0]
