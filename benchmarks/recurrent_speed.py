"""Forward+backward time of every recurrent model against torch.nn.LSTM, measured in the same process.

    python benchmarks/recurrent_speed.py [--hidden 128 256] [--length 100 500] [--models lstm_cifg ...]

Batch 32, 16 inputs, one torch thread (two threads swing wildly on a shared 2-core machine). For each
(hidden, length) the models and nn.LSTM are timed in interleaved rounds, so drift of the machine hits both
alike; the figure is the median over rounds, and the ratio is against nn.LSTM's median of the same rounds.
Peak memory is the growth of the process's peak resident set during one forward+backward (CPU; see
seqbench.metrics.PeakMemory). With depth_gated_lstm (two layers by default) a two-layer nn.LSTM is timed too. Prints a Markdown table; `--json FILE` also writes the raw figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

import seqbench
from seqbench.metrics import PeakMemory
from seqbench.registry import MODELS

REFERENCES = {"nn.LSTM": 1, "nn.LSTM-2layers": 2}  # name: layers

RECURRENT = [
    "rnn",
    "irnn",
    "gru",
    "gru_cho",
    "lstm",
    "lstm_peephole",
    "lstm_nig",
    "lstm_nfg",
    "lstm_nog",
    "lstm_niaf",
    "lstm_noaf",
    "lstm_cifg",
    "lstm_fgr",
    "lstm_1997",
    "depth_gated_lstm",
    "clockwork_rnn",
]


class TorchLSTM(torch.nn.Module):
    """The reference: PyTorch's fused LSTM (oneDNN on the CPU, cuDNN on a GPU)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lstm(x)[0]


def step(model: torch.nn.Module, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    model(x).square().mean().backward()


def time_step(model: torch.nn.Module, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    step(model, x)
    return time.perf_counter() - t0


def _memory_in_this_process(name: str, hidden: int, length: int, batch: int, inputs: int) -> int:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base, _, impl = name.partition("+")
    options = {"implementation": impl} if impl else {}
    model = (
        TorchLSTM(inputs, hidden, REFERENCES[name])
        if name in REFERENCES
        else seqbench.load_model(base, inputs, hidden, **options)
    )
    x = torch.randn(batch, length, inputs)
    meter = PeakMemory(torch.device("cpu"))
    meter.start()
    step(model, x)
    return meter.stop()


def peak_memory(name: str, hidden: int, length: int, batch: int, inputs: int) -> int:
    """Peak resident-set growth of one forward+backward, in a fresh process: in a long-lived one the
    allocator keeps freed memory and later measurements read too low."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory-of", name, str(hidden), str(length), str(batch), str(inputs)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--length", type=int, nargs="+", default=[100, 500])
    ap.add_argument("--models", nargs="+", default=RECURRENT)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--inputs", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", help="also write the raw figures here")
    ap.add_argument("--memory-of", nargs=5, metavar=("MODEL", "H", "T", "B", "I"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_of:
        name, *sizes = args.memory_of
        print(_memory_in_this_process(name, *map(int, sizes)))
        return
    torch.set_num_threads(1)
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        ap.error(f"unknown models: {unknown}")

    rows = []
    for H in args.hidden:
        for T in args.length:
            torch.manual_seed(0)
            x = torch.randn(args.batch, T, args.inputs)
            models = {"nn.LSTM": TorchLSTM(args.inputs, H)}
            if "depth_gated_lstm" in args.models:  # two layers by default: compare it with two layers too
                models["nn.LSTM-2layers"] = TorchLSTM(args.inputs, H, num_layers=2)
            models.update({m: seqbench.load_model(m, args.inputs, H) for m in args.models})
            for m in models.values():  # warm-up (allocator, oneDNN primitives)
                step(m, x)
            times: dict[str, list[float]] = {name: [] for name in models}
            rounds = max(3, args.rounds if T <= 100 else args.rounds // 2)
            for _ in range(rounds):
                for name, m in models.items():
                    times[name].append(time_step(m, x))
            mem = {name: peak_memory(name, H, T, args.batch, args.inputs) for name in models}
            ref = statistics.median(times["nn.LSTM"])
            for name in models:
                med = statistics.median(times[name])
                rows.append(
                    {
                        "model": name,
                        "hidden": H,
                        "length": T,
                        "ms": med * 1e3,
                        "ratio": med / ref,
                        "peak_mib": mem[name] / 2**20,
                        "rounds": rounds,
                    }
                )
                print(
                    f"H={H} T={T} {name:<18} {med * 1e3:8.1f} ms  x{med / ref:5.2f}  {mem[name] / 2**20:7.1f} MiB",
                    flush=True,
                )

    print("\n| model | " + " | ".join(f"H{h} T{t}" for h in args.hidden for t in args.length) + " |")
    print("|---|" + "---|" * (len(args.hidden) * len(args.length)))
    names = list(dict.fromkeys(r["model"] for r in rows))
    for name in names:
        cells = []
        for h in args.hidden:
            for t in args.length:
                r = next(r for r in rows if r["model"] == name and r["hidden"] == h and r["length"] == t)
                cells.append(f"{r['ms']:.0f} ms (x{r['ratio']:.2f})")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("\nPeak memory (MiB) growth during one step, T=100 -> T=500 (ratio):")
    for name in names:
        for h in args.hidden:
            m = {
                t: next(
                    r["peak_mib"]
                    for r in rows
                    if r["model"] == name and r["hidden"] == h and r["length"] == t
                )
                for t in args.length
            }
            if len(args.length) >= 2:
                lo, hi = min(args.length), max(args.length)
                ratio = m[hi] / m[lo] if m[lo] > 0 else float("nan")
                print(
                    f"  {name:<18} H{h}: {m[lo]:6.1f} -> {m[hi]:6.1f}  (x{ratio:.2f} for x{hi / lo:.0f} length)"
                )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
