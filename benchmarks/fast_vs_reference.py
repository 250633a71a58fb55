"""One training step of a model's fast path against its reference path and against nn.LSTM, in one process.

    OMP_NUM_THREADS=1 python benchmarks/fast_vs_reference.py slstm:64:1000 slstm:26:200 dnc:128:100

Each argument is model:H:T. One step is forward, backward and Adam on an MSE loss, batch 32, 8 inputs (16
for the memory models, as `seqbench bench`), default options; `implementation="fast"` against
`implementation="reference"` (the models whose fast path is a C++ loop: the linear-attention mixers, rwkv7,
slstm, ntm, dnc, mamba), and nn.LSTM of the same width and of about the same parameter count. Three
interleaved rounds of 3 steps, the best step of each; one thread. Ratios are within one run: the
milliseconds depend on the machine's load, the ratios much less (`seqbench bench` is the benchmark of
record; it has no way to pass `implementation`).
"""

from __future__ import annotations

import sys
import time

import torch

from seqbench.bench import build  # seeds 0, then the model or the nn.LSTM wrapper the bench compares with

MEMORY_MODELS = {"ntm", "dnc", "stack_rnn"}


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def step_time(model: torch.nn.Module, x: torch.Tensor, width: int, reps: int = 3) -> float:
    """The best of `reps` training steps, in seconds."""
    y = torch.randn(x.shape[0], x.shape[1], width)
    opt = torch.optim.Adam(model.parameters())
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        best = min(best, time.perf_counter() - start)
    return best


def compare(name: str, hidden: int, length: int, rounds: int = 3) -> dict[str, float]:
    n_in = 16 if name in MEMORY_MODELS else 8
    x = torch.randn(32, length, n_in)
    n_model = _params(build(name, n_in, hidden))
    equal = max(h for h in range(4, 2048) if _params(build("nn.LSTM", n_in, h)) <= n_model)
    builders = {
        "fast": lambda: build(name, n_in, hidden, {"implementation": "fast"}),
        "reference": lambda: build(name, n_in, hidden, {"implementation": "reference"}),
        "lstm": lambda: build("nn.LSTM", n_in, hidden),
        f"lstm_{equal}": lambda: build("nn.LSTM", n_in, equal),
    }
    best: dict[str, float] = {}
    for _ in range(rounds):
        for kind, make in builders.items():
            width = equal if kind.startswith("lstm_") else hidden
            best[kind] = min(best.get(kind, float("inf")), step_time(make(), x, width))
    return best | {"equal_hidden": float(equal)}


def main(args: list[str]) -> None:
    torch.set_num_threads(1)
    print(
        "| model | H | T | fast ms | reference ms | reference / fast | fast / nn.LSTM (same H) | fast / nn.LSTM (equal params, H) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for arg in args:
        name, hidden, length = arg.split(":")
        r = compare(name, int(hidden), int(length))
        eq = int(r["equal_hidden"])
        print(
            f"| {name} | {hidden} | {length} | {r['fast'] * 1e3:.1f} | {r['reference'] * 1e3:.1f} | "
            f"{r['reference'] / r['fast']:.2f}x | {r['fast'] / r['lstm']:.2f}x | "
            f"{r['fast'] / r[f'lstm_{eq}']:.2f}x ({eq}) |",
            flush=True,
        )


if __name__ == "__main__":
    main(sys.argv[1:] or ["slstm:64:1000"])
