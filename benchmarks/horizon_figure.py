"""Memory horizon against truncation, from the rows of horizon-tbptt.yaml and horizon-bptt.yaml.

    python benchmarks/horizon_figure.py results/reference/literature --out docs/horizon-vs-k2.svg \
        --table results/reference/literature/horizon.md

Horizon of one seed: the largest delay T of the grid whose accuracy at the training length reaches
`--threshold` (0.9; chance is 1/4). Writes the figure (horizon against k2, full BPTT drawn at the right,
mean and range over seeds) and a Markdown table of mean accuracy per (T, trainer) beside it (.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from seqbench.store import read_runs


def label(row) -> str:
    if row["trainer"] == "tbptt":
        return f"tbptt k2={json.loads(row['trainer_options'])['k2']}"
    return "bptt"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--table", type=Path, help="where the Markdown table goes (default: beside --out)")
    ap.add_argument("--threshold", type=float, default=0.9)
    args = ap.parse_args()
    runs = read_runs(args.results)
    runs = runs[(runs.task == "copy_memory") & (runs.model == "lstm") & runs.trainer.isin(["tbptt", "bptt"])]
    runs = runs[runs.task_options.str.contains('"copy_length": 1') & (runs.stream_episodes == 0)]
    runs = runs.assign(T=runs.task_options.map(lambda s: json.loads(s)["T"]), label=runs.apply(label, axis=1))
    acc = runs.groupby(["label", "T"]).accuracy.agg(["mean", "min", "max", "count"])
    labels = sorted(runs.label.unique(), key=lambda s: (s == "bptt", int(s.split("=")[1]) if "=" in s else 0))
    Ts = sorted(runs["T"].unique())
    horizon = {}
    for lab in labels:
        per_seed = []
        for _seed, g in runs[runs.label == lab].groupby("seed"):
            ok = g[g.accuracy >= args.threshold]["T"]
            per_seed.append(int(ok.max()) if len(ok) else 0)
        horizon[lab] = per_seed
    xs = [int(lab.split("=")[1]) if "=" in lab else 100 for lab in labels]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    means = [sum(h) / len(h) for h in horizon.values()]
    ax.plot(xs, means, "o-", label="LSTM, mean over seeds")
    for x, h in zip(xs, horizon.values(), strict=True):
        for i, v in enumerate(h):
            ax.plot(
                x * (1 + 0.06 * (i - 1)),
                v,
                "x",
                color="tab:orange",
                label="one seed" if x == xs[0] and i == 0 else None,
            )
    ks = [x for x, lab in zip(xs, labels, strict=True) if lab != "bptt"]
    ax.plot(ks, [k - 2 for k in ks], ":", color="grey", label="T = k2 - 2: one window holds store and recall")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=5)
    ax.set_ylim(0, 120)
    ax.set_xticks(xs, [lab.replace("tbptt ", "") for lab in labels])
    ax.set_yticks([0, *Ts], [str(t) for t in [0, *Ts]])
    ax.set_xlabel("truncation k2 (k1 = k2); full BPTT at the right")
    ax.set_ylabel(f"horizon: largest T, accuracy >= {args.threshold}")
    ax.set_title("copy_memory (1 of 4 symbols after T steps), 300 steps")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(args.out)
    lines = [
        f"Mean accuracy over seeds (n = seeds) at the training length; horizon at accuracy >= {args.threshold}.",
        "",
        "| trainer | " + " | ".join(f"T={t}" for t in Ts) + " | horizon per seed |",
        "|---|" + "---|" * (len(Ts) + 1),
    ]
    for lab in labels:
        cells = []
        for t in Ts:
            if (lab, t) in acc.index:
                r = acc.loc[(lab, t)]
                cells.append(f"{r['mean']:.2f} (n={int(r['count'])})")
            else:
                cells.append("-")
        lines.append(f"| {lab} | " + " | ".join(cells) + f" | {horizon[lab]} |")
    (args.table or args.out.with_suffix(".md")).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
