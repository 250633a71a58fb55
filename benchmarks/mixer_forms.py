"""The mixer models' two forms against each other: the train step (forward + backward, mean-square loss) of
the default parallel form and of the recurrent form (the whole model stepped one step at a time with
`model.step`, the specification), timed in interleaved rounds in one process; the ratio is recurrent /
parallel of the medians of the same rounds.

    python benchmarks/mixer_forms.py [--hidden 128] [--length 2000] [--models mamba s4d ...] [--rounds 3]

Batch 32, 16 inputs, one torch thread. Prints a Markdown table; `--json FILE` also writes the raw figures.
`seqbench bench` measures the parallel forms against nn.LSTM; it has no way to run a model's recurrent form.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import seqbench
from seqbench.models.backbone import MixerModel
from seqbench.registry import MODELS


def mixer_models() -> list[str]:
    return [
        n
        for n in MODELS.names()
        if issubclass(MODELS.get(n), MixerModel) and seqbench.load_model(n, 4, 8).recurrent
    ]


def stepped(model: MixerModel, x: torch.Tensor) -> torch.Tensor:
    state = model.initial_state(x.shape[0], x.device, x.dtype)
    hs = []
    for x_t in x.unbind(1):
        h, state = model.step(x_t, state)
        hs.append(h)
    return torch.stack(hs, 1)


def train_time(model: MixerModel, x: torch.Tensor, recurrent: bool) -> float:
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    (stepped(model, x) if recurrent else model(x)).square().mean().backward()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--length", type=int, nargs="+", default=[2000])
    ap.add_argument("--models", nargs="+", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    print("| model | T | parallel s | recurrent s | recurrent / parallel |\n|---|---|---|---|---|")
    for name in args.models or mixer_models():
        torch.manual_seed(0)
        model = seqbench.load_model(name, 16, args.hidden)
        for T in args.length:
            x = torch.randn(args.batch, T, 16)
            train_time(model, x[:, :8], False)  # warm-up
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.rounds):
                for recurrent in (False, True):
                    times[recurrent].append(train_time(model, x, recurrent))
            par, rec = statistics.median(times[False]), statistics.median(times[True])
            rows.append({"model": name, "T": T, "parallel_s": par, "recurrent_s": rec, "ratio": rec / par})
            print(f"| {name} | {T} | {par:.3f} | {rec:.3f} | {rec / par:.1f}x |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
