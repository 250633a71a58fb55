"""Cost of the trainers as the width grows: time per time step and memory, exact RTRL against BPTT (and
UORO), with fitted exponents. Issue 17's "cost as it grows with width".

    python benchmarks/trainer_cost.py --out results/reference/literature/trainer-cost.md

Past the overhead (issue 17, second round): RTRL alone at n = 64..256 with batch 1, and BPTT and UORO at
n = 128..2048, without the memory-against-T part:

    python benchmarks/trainer_cost.py --trainers rtrl --hidden 64 96 128 192 256 --batch 1 --length 3 \
        --rounds 2 --memory-lengths --out results/reference/literature/trainer-cost-rtrl-large.md
    python benchmarks/trainer_cost.py --trainers bptt uoro --hidden 128 256 512 1024 2048 \
        --memory-lengths --out results/reference/literature/trainer-cost-bptt-large.md

and the repeats in trainer-cost-rtrl-384.md (--hidden 192 256 384), trainer-cost-rtrl-512.md (--hidden 256 384
512, about 4.3 GB peak) and trainer-cost-bptt-rerun.md (--trainers uoro bptt --hidden 512 1024 2048).

An Elman RNN (`rnn`) on the adding task's inputs (2 channels), batch 4, one torch thread. Per width n, one
training batch of T steps is timed (median of `--rounds`, after one warm-up) and divided by T. Memory: the
bytes autograd saves for backward (BPTT; counted with saved_tensors_hooks, exact) and the influence
matrices RTRL carries (B x (n + 2S) x P floats), plus the process's peak resident growth (seqbench.metrics).
Expected: RTRL's time per step ~ n^4 (P ~ n^2 parameters times S^2 = n^2), BPTT's ~ n^2, BPTT's memory
linear in T and RTRL's independent of T. Small widths are dominated by per-step overhead (Python, vmap), so
the exponents are fitted over all widths and over the widest three.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from pathlib import Path

import torch

import seqbench
from seqbench.bench import fit_exponent
from seqbench.metrics import PeakMemory
from seqbench.network import build_network
from seqbench.trainers.rtrl import rtrl
from seqbench.trainers.segments import bptt
from seqbench.trainers.uoro import generator, uoro


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for backward while `fn` runs (BPTT's activation memory)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def measure(trainer: str, hidden: int, length: int, batch: int, rounds: int) -> dict:
    task = seqbench.load_task("adding", T=length)
    torch.manual_seed(0)
    net = build_network(task, "rnn", hidden, {})
    b = task.sample(batch, length, torch.Generator().manual_seed(0))
    gen = generator(torch.device("cpu"), 0)

    def step() -> None:
        if trainer == "bptt":
            bptt(net, b, task.loss)
        elif trainer == "rtrl":
            rtrl(net, b, task.loss, online=False)
        else:
            uoro(net, b, task.loss, gen, online=False)
        net.zero_grad(set_to_none=True)

    step()  # warm-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    mem = PeakMemory(torch.device("cpu"))
    mem.start()
    step()
    peak = mem.stop()
    P = sum(p.numel() for p in net.parameters() if p.requires_grad) - sum(
        p.numel() for p in net.read_out.parameters()
    )
    row = {
        "trainer": trainer,
        "hidden": hidden,
        "length": length,
        "batch": batch,
        "ms_per_step": 1000 * statistics.median(times) / length,
        "peak_rss_growth_bytes": peak,
        "params_core": P,
    }
    if trainer == "bptt":
        row["held_bytes"] = saved_bytes(lambda: bptt(net, b, task.loss))
        net.zero_grad(set_to_none=True)
    elif trainer == "rtrl":
        row["held_bytes"] = batch * (hidden + 2 * hidden) * P * 4  # the Jacobian and M, float32
    else:
        row["held_bytes"] = batch * (hidden + P) * 4  # ũ and θ̃
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, nargs="+", default=[8, 16, 32, 64])
    ap.add_argument("--length", type=int, default=20)
    ap.add_argument("--memory-lengths", type=int, nargs="*", default=[50, 100, 200, 400])
    ap.add_argument(
        "--trainers", nargs="+", default=["bptt", "rtrl", "uoro"], choices=["bptt", "rtrl", "uoro"]
    )
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()
    rows = [measure(t, n, args.length, args.batch, args.rounds) for t in args.trainers for n in args.hidden]
    by_t = [
        measure(t, args.hidden[-1], T, args.batch, 1)
        for t in ("bptt", "rtrl")
        if t in args.trainers
        for T in args.memory_lengths
    ]
    load = [max(a, b) for a, b in zip(load, os.getloadavg(), strict=True)]
    fits = {}
    for t in args.trainers:
        rs = [r for r in rows if r["trainer"] == t]
        for a, b in itertools.pairwise(rs):  # local exponents: where the overhead stops dominating
            fits[f"{t} time vs n ({a['hidden']}-{b['hidden']})"] = fit_exponent(
                [a["hidden"], b["hidden"]], [a["ms_per_step"], b["ms_per_step"]]
            )
        rs = [r for r in rows if r["trainer"] == t]
        fits[f"{t} time vs n (all)"] = fit_exponent([r["hidden"] for r in rs], [r["ms_per_step"] for r in rs])
        fits[f"{t} time vs n (widest 3)"] = fit_exponent(
            [r["hidden"] for r in rs[-3:]], [r["ms_per_step"] for r in rs[-3:]]
        )
        fits[f"{t} held memory vs n"] = fit_exponent([r["hidden"] for r in rs], [r["held_bytes"] for r in rs])
    for t in ("bptt", "rtrl"):
        rs = [r for r in by_t if r["trainer"] == t]
        if not rs:
            continue
        fits[f"{t} held memory vs T"] = fit_exponent([r["length"] for r in rs], [r["held_bytes"] for r in rs])
    lines = [
        f"# Trainer cost against width (rnn, adding inputs, batch {args.batch}, T = {args.length}, 1 thread, shared machine)",
        "",
        f"Load average (1/5/15 min, the higher of start and end): {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        f"on {os.cpu_count()} cores; median of {args.rounds} rounds after one warm-up.",
        "",
        "| trainer | n | ms per time step | held for the gradient (MB) | peak RSS growth (MB) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['trainer']} | {r['hidden']} | {r['ms_per_step']:.3f} | {r['held_bytes'] / 1e6:.3f} | "
            f"{r['peak_rss_growth_bytes'] / 1e6:.1f} |"
        )
    lines += (
        []
        if not by_t
        else [
            "",
            f"Memory against T at n = {args.hidden[-1]}:",
            "",
            "| trainer | T | held (MB) | peak RSS growth (MB) |",
            "|---|---|---|---|",
        ]
    )
    for r in by_t:
        lines.append(
            f"| {r['trainer']} | {r['length']} | {r['held_bytes'] / 1e6:.3f} | {r['peak_rss_growth_bytes'] / 1e6:.1f} |"
        )
    lines += ["", "Fitted exponents (least squares of log y on log x):", ""]
    lines += [f"- {k}: {v:.2f}" if v is not None else f"- {k}: n/a" for k, v in fits.items()]
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(
        json.dumps({"rows": rows, "by_length": by_t, "fits": fits}, indent=1)
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
