"""`seqbench bench`: every model's speed and memory as a ratio to PyTorch's fused LSTM, measured in one run.

For each (hidden size, length) the models and the reference `torch.nn.LSTM` of the same hidden size are
timed in interleaved rounds (model A, model B, …, reference, then again), so that drift of a shared machine
hits all of them alike; each figure is the median over rounds and each ratio is against the reference's
median from the same rounds. Per model and size:

- train step: forward + backward of a batch (random inputs, mean-square loss), seconds, and tokens/s;
- inference: forward under `torch.no_grad()`, tokens/s;
- peak memory of one training step: on a GPU `max_memory_allocated`; on the CPU the peak resident-set growth
  measured in a fresh process (in a long-lived one the allocator keeps freed memory and later readings are low);
- FLOPs of one training step (torch's FlopCounterMode: matrix products and convolutions, forward and
  backward) and the achieved FLOP/s as a fraction of a large matrix product's FLOP/s on the same device,
  measured in the same run: how far a model is from the hardware's limit;
- scaling: the exponent of time and of memory against length, fitted over the lengths given (1 = linear).

Rows go to the Parquet store (`results/bench/<bench_id>.parquet`, kind = bench) and are printed as a table.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import seqbench
from seqbench.memory import PeakMemory, memory_kind
from seqbench.network import state_floats
from seqbench.provenance import kernels, provenance, reset_kernels
from seqbench.registry import MODELS
from seqbench.store import new_run_id
from seqbench.tables import Table, fmt
from seqbench.training import bare_training, count_parameters, sync, training_config

REFERENCE = "nn.LSTM"
# The fused PyTorch module each family of models is also compared with ("within 1.5x of nn.GRU / nn.RNN"); the
# two-layer models at their default depth against a two-layer nn.LSTM of the same width.
FAMILY = {"gru": "nn.GRU", "gru_cho": "nn.GRU", "rnn": "nn.RNN", "irnn": "nn.RNN", "clockwork_rnn": "nn.RNN"}
FAMILY |= {"depth_gated_lstm": "nn.LSTM-2", "grid_lstm": "nn.LSTM-2"}
TORCH_MODULES = {
    "nn.LSTM": (nn.LSTM, 1),
    "nn.GRU": (nn.GRU, 1),
    "nn.RNN": (nn.RNN, 1),
    "nn.LSTM-2": (nn.LSTM, 2),
}


class TorchRecurrent(nn.Module):
    """A reference: PyTorch's fused LSTM, GRU or tanh RNN (oneDNN on the CPU, cuDNN on a GPU), one layer or
    (nn.LSTM-2) two."""

    def __init__(self, kind: str, input_size: int, hidden_size: int) -> None:
        super().__init__()
        module, layers = TORCH_MODULES[kind]
        self.rnn = module(input_size, hidden_size, layers, batch_first=True)
        self.state_size = (2 if module is nn.LSTM else 1) * hidden_size * layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


def build(name: str, input_size: int, hidden_size: int, options: dict[str, Any] | None = None) -> nn.Module:
    torch.manual_seed(0)
    if name in TORCH_MODULES:
        return TorchRecurrent(name, input_size, hidden_size)
    return seqbench.load_model(name, input_size, hidden_size, **(options or {}))


def train_step(model: nn.Module, x: torch.Tensor) -> None:
    """What the bench times as a model's training step: forward and backward of the model alone on random
    inputs, under a mean-square loss (no task, no optimiser: the model's own cost, comparable with
    nn.LSTM's). A run's training step is `seqbench.training.Training.step`."""
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def matmul_flops_per_s(device: torch.device, n: int | None = None, repeats: int = 5) -> float:
    """FLOP/s of a large square float32 matrix product: the device's practical limit for these models."""
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b  # warm-up
    best = min(timed(lambda: a @ b, device) for _ in range(repeats))
    return 2 * n**3 / best


def fused_rnn_flops(module: nn.RNNBase, batch: int, length: int, input_grad: bool = False) -> int:
    """FLOPs of one forward + backward of a fused nn.RNN / nn.LSTM / nn.GRU call, which torch's counter
    does not see (one opaque kernel). Per layer and direction, with G = 4 gates (LSTM), 3 (GRU) or 1 and
    P = 2·B·T·G·H: forward P·(in + H); backward the weight gradients P·(in + H), the recurrent gradient P·H and
    the input gradient P·in, into the first layer only when its input needs one (`input_grad`)."""
    gates = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
    H, dirs = module.hidden_size, 2 if module.bidirectional else 1
    total = 0
    for layer in range(module.num_layers):
        n_in = module.input_size if layer == 0 else H * dirs
        P = dirs * 2 * batch * length * gates[module.mode] * H
        total += 2 * P * (n_in + H) + P * H + (P * n_in if layer > 0 or input_grad else 0)
    return total


def step_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward + backward: counted by torch (matrix products, convolutions, attention), plus
    the fused recurrent kernels' products, which its counter cannot see."""
    from torch.utils import flop_counter
    from torch.utils.flop_counter import FlopCounterMode

    addmm_, baddbmm_ = torch.ops.aten.addmm_, torch.ops.aten.baddbmm_
    if addmm_ not in flop_counter.flop_registry:  # in-place, as hand-written backward passes accumulate

        @flop_counter.register_flop_formula(addmm_)
        def _(self_shape, a_shape, b_shape, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
            return 2 * a_shape[0] * a_shape[1] * b_shape[1]

    if baddbmm_ not in flop_counter.flop_registry:  # the batched form (grid_lstm's depth cells)

        @flop_counter.register_flop_formula(baddbmm_)
        def _(self_shape, a_shape, b_shape, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
            return 2 * a_shape[0] * a_shape[1] * a_shape[2] * b_shape[2]

    # Each fused recurrent module's calls, with the shapes it really saw (conv_rnn's LSTM runs on T / stride).
    fused = 0

    def count(module: nn.Module, args: tuple, _out: Any) -> None:
        nonlocal fused
        inp = args[0]
        batch, length = (inp.shape[0], inp.shape[1]) if module.batch_first else (inp.shape[1], inp.shape[0])
        fused += fused_rnn_flops(module, batch, length, inp.requires_grad)

    # One step outside the count first: what is built on first use (the LSTM cell's C++ loops, which register
    # their FLOP formulas when they load) must exist before the counter copies torch's formula registry. One
    # sequence is enough for that (a whole batch cost ~45 s for memory_network at T = 2000).
    train_step(model, x[:1])
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.RNNBase)]
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            train_step(model, x)
    finally:
        for h in hooks:
            h.remove()
    return int(counter.get_total_flops()) + fused


def fit_exponent(xs: Iterable[float], ys: Iterable[float]) -> float | None:
    """Least-squares slope of log y against log x: y ∝ x^slope. None with fewer than two usable points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else None


def _memory_here(name: str, hidden: int, length: int, batch: int, inputs: int, options: str) -> int:
    torch.set_num_threads(1)
    model = build(name, inputs, hidden, json.loads(options))
    x = torch.randn(batch, length, inputs)
    meter = PeakMemory(torch.device("cpu"))
    meter.start()
    train_step(model, x)
    return meter.stop()


def peak_memory(
    name: str, hidden: int, length: int, batch: int, inputs: int, device: torch.device, options: dict
) -> int:
    """Peak memory of one training step: in this process on a GPU, in a fresh one on the CPU."""
    if device.type == "cuda":
        model = build(name, inputs, hidden, options).to(device)
        x = torch.randn(batch, length, inputs, device=device)
        train_step(model, x)  # the first step allocates workspaces: measure the second
        meter = PeakMemory(device)
        meter.start()
        train_step(model, x)
        return meter.stop()
    args = [name, str(hidden), str(length), str(batch), str(inputs), json.dumps(options)]
    out = subprocess.run(
        [sys.executable, "-m", "seqbench.bench", "--memory-of", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


@dataclass
class BenchSpec:
    models: list[str]
    hidden: list[int] = field(default_factory=lambda: [128])
    lengths: list[int] = field(default_factory=lambda: [100, 500, 2000])
    batch_size: int = 32
    input_size: int = 16
    device: str = "cpu"
    rounds: int = 5
    threads: int | None = 1  # one thread: two swing wildly on a shared 2-core machine
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    memory: bool = True
    flops: bool = True


def run_bench(spec: BenchSpec, on_progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Measure every model of the spec at every (hidden, length), with nn.LSTM as the reference.

    A model that fails (out of memory, an error in its code) gets a row with status 'error' and the
    bench goes on with the others."""
    from seqbench.runner import resolve_device

    unknown = [m for m in spec.models if m not in TORCH_MODULES and m not in MODELS]
    if unknown:
        MODELS.get(unknown[0])  # raises with "did you mean"
    device = resolve_device(spec.device)
    threads_before = torch.get_num_threads()
    if spec.threads is not None and device.type == "cpu":
        torch.set_num_threads(spec.threads)
    bench_id = new_run_id()
    families = sorted({FAMILY[m] for m in spec.models if m in FAMILY} - {REFERENCE})
    names = [REFERENCE, *families, *[m for m in spec.models if m not in (REFERENCE, *families)]]
    say = on_progress or (lambda _: None)
    try:
        limit = matmul_flops_per_s(device)
        say(f"matrix-product limit: {limit / 1e9:.1f} GFLOP/s")
        rows = []
        for H in spec.hidden:
            for T in spec.lengths:
                rows += _measure_size(spec, names, H, T, device, limit, bench_id, say)
        _add_exponents(rows)
        return rows
    finally:
        torch.set_num_threads(threads_before)


def _measure_size(
    spec: BenchSpec,
    names: list[str],
    H: int,
    T: int,
    device: torch.device,
    limit: float,
    bench_id: str,
    say: Callable[[str], None],
) -> list[dict[str, Any]]:
    B, n_in = spec.batch_size, spec.input_size
    x = torch.randn(B, T, n_in, generator=torch.Generator().manual_seed(0)).to(device)
    models: dict[str, nn.Module] = {}
    errors: dict[str, str] = {}
    kernel_of: dict[str, str] = {}
    for name in names:
        try:
            reset_kernels()
            models[name] = build(name, n_in, H, spec.model_options.get(name)).to(device)
            train_step(models[name], x)  # warm-up: allocator, oneDNN / cuDNN primitives, lazy init
            with torch.no_grad():
                models[name](x)
            kernel_of[name] = kernels()
        except (RuntimeError, MemoryError, ValueError) as exc:  # OOM or a model that cannot take this size
            models.pop(name, None)
            errors[name] = f"{type(exc).__name__}: {exc}".splitlines()[0]
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if REFERENCE not in models:
        raise RuntimeError(f"The reference nn.LSTM failed at hidden {H}, length {T}: {errors[REFERENCE]}")
    train: dict[str, list[float]] = {n: [] for n in models}
    infer: dict[str, list[float]] = {n: [] for n in models}
    rounds = max(3, spec.rounds if T <= 500 else spec.rounds // 2)
    for r in range(rounds):
        say(f"hidden {H}, length {T}: round {r + 1}/{rounds}")
        for name, model in models.items():
            train[name].append(timed(lambda m=model: train_step(m, x), device))
            with torch.no_grad():
                infer[name].append(timed(lambda m=model: m(x), device))
    ref_train, ref_infer = statistics.median(train[REFERENCE]), statistics.median(infer[REFERENCE])
    ref_mem = None
    rows = []
    for name in names:
        row: dict[str, Any] = {
            "kind": "bench",
            "bench_id": bench_id,
            **provenance(device),
            "model": name,
            "model_options": json.dumps(spec.model_options.get(name, {}), sort_keys=True),
            "threads": torch.get_num_threads() if device.type == "cpu" else None,
            "kernels": kernel_of.get(name),
            "hidden_size": H,
            "length": T,
            "batch_size": B,
            "input_size": n_in,
            "rounds": rounds,
            "matmul_flops_per_s": limit,
            "status": "ok" if name in models else "error",
            "error": errors.get(name),
        }
        if name in models:
            model = models[name]
            t_train, t_infer = statistics.median(train[name]), statistics.median(infer[name])
            row.update(
                params=count_parameters(model),
                state_size=state_floats(model, T)[0],
                train_step_s=t_train,
                train_tokens_per_s=B * T / t_train,
                infer_step_s=t_infer,
                infer_tokens_per_s=B * T / t_infer,
                ratio_train=t_train / ref_train,
                ratio_infer=t_infer / ref_infer,
            )
            family = FAMILY.get(name)
            if family in train:
                row.update(family_reference=family, ratio_family=t_train / statistics.median(train[family]))
            if spec.flops:
                flops = step_flops(model, x)
                row.update(flops=flops, flops_per_s=flops / t_train, flops_fraction=flops / t_train / limit)
            if spec.memory:
                say(f"hidden {H}, length {T}: peak memory of {name}")
                try:
                    mem = peak_memory(name, H, T, B, n_in, device, spec.model_options.get(name, {}))
                except (subprocess.CalledProcessError, RuntimeError) as exc:
                    row["error"] = f"memory not measured: {str(exc).splitlines()[0]}"
                else:
                    row["peak_memory_bytes"] = mem
                    row["memory_kind"] = memory_kind(device)
                    if name == REFERENCE:
                        ref_mem = mem
                    if ref_mem:
                        row["ratio_memory"] = mem / ref_mem
        rows.append(row)
    del models
    return rows


def _add_exponents(rows: list[dict[str, Any]]) -> None:
    """Time and memory exponents against length, per (model, hidden), on every row of the group."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        if row["status"] == "ok":
            groups.setdefault((row["model"], row["hidden_size"]), []).append(row)
    for group in groups.values():
        lengths = [r["length"] for r in group]
        t_exp = fit_exponent(lengths, [r["train_step_s"] for r in group])
        m_exp = fit_exponent(lengths, [r.get("peak_memory_bytes") for r in group])
        for r in group:
            r["time_exponent"], r["memory_exponent"] = t_exp, m_exp


def bench_table(rows: list[dict[str, Any]]) -> Table:
    columns = ["model", "H", "T", "train ms", "x nn.LSTM", "infer x", "train tok/s", "infer tok/s"]
    columns += ["x family", "peak MiB", "mem x", "FLOP/s %", "time ~T^", "mem ~T^"]
    cells = []
    for r in rows:
        if r["status"] != "ok":
            cells.append([r["model"], str(r["hidden_size"]), str(r["length"]), f"error: {r['error']}"])
            continue
        mem = r.get("peak_memory_bytes")
        cells.append(
            [
                r["model"],
                str(r["hidden_size"]),
                str(r["length"]),
                fmt(r["train_step_s"] * 1e3, ".1f"),
                fmt(r["ratio_train"], ".2f"),
                fmt(r["ratio_infer"], ".2f"),
                fmt(r["train_tokens_per_s"], ",.0f"),
                fmt(r["infer_tokens_per_s"], ",.0f"),
                f"{fmt(r.get('ratio_family'), '.2f')} ({r['family_reference']})"
                if r.get("ratio_family")
                else "-",
                fmt(None if mem is None else mem / 2**20, ".1f"),
                fmt(r.get("ratio_memory"), ".2f"),
                fmt(None if r.get("flops_fraction") is None else 100 * r["flops_fraction"], ".1f"),
                fmt(r.get("time_exponent"), ".2f"),
                fmt(r.get("memory_exponent"), ".2f"),
            ]
        )
    first = rows[0]
    notes = (
        f"{first['device_name']} ({first['device']}, {first['threads'] or '-'} threads), batch "
        f"{first['batch_size']}, {first['input_size']} inputs, median of {first['rounds']} interleaved rounds "
        "(halved beyond T = 500). x nn.LSTM / infer x / mem x: ratio to torch.nn.LSTM of the same H and T "
        "in the same rounds; x family: against nn.GRU or nn.RNN for those families, a two-layer nn.LSTM (nn.LSTM-2) for depth_gated_lstm and grid_lstm. FLOP/s %: achieved FLOP/s of a training step against a "
        f"{fmt(first['matmul_flops_per_s'] / 1e9, '.1f')} GFLOP/s matrix product measured in the same run. "
        "~T^: exponent of time and memory against T fitted over the lengths measured (1 = linear)."
    )
    return Table("seqbench bench", columns, cells, notes)


def bare_loop_time(config: Any, steps: int) -> float:
    """Seconds for `steps` training steps with nothing around them (`training.bare_training`)."""
    return bare_training(config, steps)[1]


def loop_overhead(
    model: str, device: str = "cpu", task: str = "copy", steps: int | None = None
) -> dict[str, float]:
    """What the runner adds to training, two ways, on a quick-preset run (`steps` defaults to the preset's,
    so that the final evaluation is amortised as in a real run).

    In the run: the runner times its own parts, so `overhead` = wall time / the model's own time in the
    training steps (forward, loss, backward, clipping, optimiser: the steps' time less batch generation)
    - 1, from one run, immune to the machine's drift between runs. Against a bare loop: `vs_bare` = wall
    time / the time of a loop with nothing around the steps over the same batches, measured before and after
    the runner and averaged; on a shared machine it moves by ±10% between runs, so it is the cross-check."""
    from seqbench.runner import run

    config = training_config(task, model, device, steps)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        n = config.train.steps
        before = bare_loop_time(config, n)
        row = run(config, store=False)
        after = bare_loop_time(config, row["steps"])
    finally:
        torch.set_num_threads(threads)
    bare = (before * row["steps"] / n + after) / 2
    own = row["train_time_s"] - row["data_time_s"]
    wall = row["wall_time_s"]
    return {
        "steps": row["steps"],
        "bare_s": bare,
        "own_s": own,
        "train_s": row["train_time_s"],
        "data_s": row["data_time_s"],
        "eval_s": row["eval_time_s"],
        "wall_s": wall,
        "overhead": wall / own - 1,
        "vs_bare": wall / bare - 1,
        "eval_every": config.train.eval_every,
    }


def overhead_table(
    models: list[str], device: str, say: Callable[[str], None], steps: int | None = None
) -> Table:
    cells = []
    for model in models:
        say(f"training-loop overhead: {model}")
        o = loop_overhead(model, device, steps=steps)
        own = o["own_s"]
        other = o["wall_s"] - o["train_s"] - o["eval_s"]
        cells.append(
            [
                model,
                str(o["steps"]),
                fmt(own, ".2f"),
                fmt(o["wall_s"], ".2f"),
                fmt(100 * o["data_s"] / own, ".1f"),
                fmt(100 * o["eval_s"] / own, ".1f"),
                fmt(100 * other / own, ".1f"),
                fmt(100 * o["overhead"], "+.1f"),
                fmt(o["bare_s"], ".2f"),
                fmt(100 * o["vs_bare"], "+.1f"),
            ]
        )
    notes = (
        "copy task, quick preset (evaluation every 100 steps at the training length, at every length at the "
        "end), 1 thread. model s: the model's own time in the runner's training steps (forward, loss, "
        "backward, clipping, optimiser); run s: the runner's wall time; data, evaluation and the rest (set-up, "
        "bookkeeping) as % of model s; overhead = run / model - 1, all from one run. bare s: a loop with "
        "nothing around the steps over the same batches (before and after the run, averaged); vs bare = "
        "run / bare - 1, which also carries the machine's drift between runs."
    )
    columns = [
        "model",
        "steps",
        "model s",
        "run s",
        "data %",
        "eval %",
        "rest %",
        "overhead %",
        "bare s",
        "vs bare %",
    ]
    return Table("training-loop overhead (run / model - 1)", columns, cells, notes)


def sequences_per_s(model: str, device: str, batch_size: int, steps: int = 5) -> float:
    """Training sequences/s on the copy task (length 20) at one batch size: forward, backward, optimiser."""
    # Fixed-length batches, so that both batch sizes do the same work per sequence.
    fixed = {"min_length": 20, "max_length": 20}
    config = training_config("copy", model, device, steps, batch_size, task_options=fixed)
    bare_loop_time(config, 1)  # warm-up
    return batch_size * steps / bare_loop_time(config, steps)


def batching_table(models: list[str], device: str, say: Callable[[str], None]) -> Table:
    cells = []
    for model in models:
        say(f"batching: {model}")
        one, many = sequences_per_s(model, device, 1, 20), sequences_per_s(model, device, 32, 5)
        cells.append([model, fmt(one, ".1f"), fmt(many, ".1f"), fmt(many / one, ".1f")])
    notes = "copy task at length 20 (training step: forward, backward, optimiser), 1 thread."
    columns = ["model", "seq/s at batch 1", "seq/s at batch 32", "speed-up"]
    return Table("batching", columns, cells, notes)


def main() -> None:  # `python -m seqbench.bench --memory-of ...`: one measurement in a fresh process
    if len(sys.argv) == 8 and sys.argv[1] == "--memory-of":
        name, h, t, b, i, options = sys.argv[2:]
        print(_memory_here(name, int(h), int(t), int(b), int(i), options))
    else:
        sys.exit("usage: seqbench bench (this module's command line is for its own subprocesses)")


if __name__ == "__main__":
    main()
