"""The #15 mixer models' chunked form against their recurrent form, and against nn.LSTM at equal parameters.

For each model, in one process and interleaved rounds, the train step (forward + backward, mean-square loss)
of the whole model with `form=chunked` (the default) and with `form=recurrent` (the same model, the same
weights, its recurrence looped step by step: projections, norms and MLPs stay batched, so the ratio is that of
the recurrences themselves), and of a torch.nn.LSTM whose hidden size gives about the model's parameter count.

    python benchmarks/chunked_forms.py [--hidden 128] [--length 100 1000 2000] [--models gla ...] [--rounds 3]

Batch 32, 16 inputs, one torch thread. Prints a Markdown table; `--json FILE` also writes the raw figures.
Hyena and sLSTM have one form each (FFT convolution; a nonlinear recurrence), so only their nn.LSTM ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import torch

import seqbench

MODELS = ["linear_attention", "retnet", "gla", "deltanet", "gated_deltanet", "mlstm", "rwkv7", "based"]
ONE_FORM = ["hyena", "slstm"]


def lstm_like(params: int, inputs: int) -> torch.nn.LSTM:
    """An nn.LSTM with about `params` parameters: 4 (H·I + H² + 2H) = params, solved for H."""
    b = inputs + 2
    H = max(1, round((-b + math.sqrt(b * b + params)) / 2))
    return torch.nn.LSTM(inputs, H, batch_first=True)


def train_time(model: torch.nn.Module, x: torch.Tensor) -> float:
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    y = model(x)
    (y[0] if isinstance(y, tuple) else y).square().mean().backward()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--length", type=int, nargs="+", default=[100, 1000, 2000])
    ap.add_argument("--models", nargs="+", default=MODELS + ONE_FORM)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(
        "| model | params | T | chunked s | recurrent s | recurrent / chunked | nn.LSTM (equal params) s | chunked / nn.LSTM |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.models:
        torch.manual_seed(0)
        fast = seqbench.load_model(name, 16, args.hidden)
        slow = None
        if name not in ONE_FORM:
            slow = seqbench.load_model(name, 16, args.hidden, form="recurrent")
            slow.load_state_dict(fast.state_dict())
        params = sum(p.numel() for p in fast.parameters())
        lstm = lstm_like(params, 16)
        for T in args.length:
            x = torch.randn(args.batch, T, 16)
            for m in (fast, lstm):
                train_time(m, x[:, : min(T, 64)])  # warm-up
            rounds = args.rounds if T <= 1000 else max(1, args.rounds // 2)
            times: dict[str, list[float]] = {"chunked": [], "recurrent": [], "lstm": []}
            for _ in range(rounds):
                times["chunked"].append(train_time(fast, x))
                times["lstm"].append(train_time(lstm, x))
                if slow is not None:
                    times["recurrent"].append(train_time(slow, x))
            med = {k: statistics.median(v) if v else None for k, v in times.items()}
            row = {"model": name, "params": params, "lstm_hidden": lstm.hidden_size, "T": T, **med}
            rows.append(row)
            rec = f"{med['recurrent']:.3f} | {med['recurrent'] / med['chunked']:.1f}x" if slow else "- | -"
            print(
                f"| {name} | {params:,} | {T} | {med['chunked']:.3f} | {rec} | {med['lstm']:.3f} (H {lstm.hidden_size}) "
                f"| {med['chunked'] / med['lstm']:.2f}x |",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
