"""How far an untrained network carries copy_memory's symbol: the memory truncated BPTT gets for free.

    python benchmarks/untrained_trace.py --model lstm --hidden 64 --seeds 3

copy_memory with one symbol of 4 and blanks in between is noise-free: after the symbol, every sequence of a
batch reads the same inputs, so the state at the recall step is one of only 4 points, and any read-out can
tell them apart as long as they differ. Truncated BPTT never credits the symbol's step from the recall
(they lie in different windows once T + 2 > k2), but the network's own dynamics may still carry a trace of
it there. This prints, for a freshly initialised network (torch.manual_seed(seed), then built), the smallest
distance between those 4 states at the recall step against T, beside their norm: the trace that decays with
T is what a read-out trained on the last window can decode.
"""

from __future__ import annotations

import argparse

import torch

import seqbench
from seqbench.network import build_network


def trace(model: str, hidden: int, seed: int, T: int) -> tuple[float, float]:
    task = seqbench.load_task("copy_memory", T=T, symbols=4, copy_length=1)
    torch.manual_seed(seed)
    net = build_network(task, model, hidden, {})
    x = torch.zeros(4, T + 2, dtype=torch.long)  # the 4 possible episodes: symbol, blanks, delimiter, blank
    x[:, 0] = torch.arange(1, 5)
    x[:, T] = task.delimiter
    with torch.no_grad():
        h = net.core(net.read_in(x))[:, T + 1]  # the state the recall is read from (B, H)
    d = torch.cdist(h, h)[~torch.eye(4, dtype=torch.bool)]
    return float(d.min()), float(h.norm(dim=1).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="lstm")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--T", type=int, nargs="+", default=[5, 10, 20, 50, 100])
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"| seed | {' | '.join(f'T={t}' for t in args.T)} |")
    print("|---|" + "---|" * len(args.T))
    for seed in range(args.seeds):
        cells = [trace(args.model, args.hidden, seed, t) for t in args.T]
        print(f"| {seed} | " + " | ".join(f"{d:.1e} (norm {n:.2f})" for d, n in cells) + " |")


if __name__ == "__main__":
    main()
