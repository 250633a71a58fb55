"""Tables of issue 17's stream and clipping runs, from the rows (stream-rtrl.yaml, clipping*.yaml).

python benchmarks/trainer_tables.py results/reference/literature --out results/reference/literature/trainers.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from seqbench.store import read_runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    runs = read_runs(args.results)
    train = runs.train_config.map(json.loads)
    runs = runs.assign(lr=train.map(lambda t: t["lr"]), clip=train.map(lambda t: t["clip"]))
    lines = [
        "## RTRL against BPTT on a stream (copy_memory T = 5, 4 episodes per batch, LSTM 16, batch 16)",
        "",
        "| trainer | seed | accuracy (per episode, eval stream) | last episode | updates | ms per time step (train) | steps |",
        "|---|---|---|---|---|---|---|",
    ]
    stream = runs[(runs.stream_episodes > 0) & (runs.task == "copy_memory")].sort_values(["trainer", "seed"])
    for _, r in stream.iterrows():
        m = json.loads(r["metrics"] or "{}")
        tokens_per_row_step = r["train_tokens_per_s"] / json.loads(r["train_config"])["batch_size"]
        per_step = 1000 / tokens_per_row_step if tokens_per_row_step else float("nan")
        lines.append(
            f"| {r['trainer']} | {r['seed']} | {r['accuracy']:.3f} | {m.get('accuracy_last_episode', float('nan')):.3f} "
            f"| {int(r['updates'])} | {per_step:.2f} | {r['steps']} |"
        )
    lines += [
        "",
        "## Gradient clipping: IRNN on adding, plain SGD",
        "",
        "| T | lr | clip | seed | status | error | test MSE / loss | accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    clip = runs[(runs.model == "irnn") & (runs.task == "adding") & runs.trainer.notna()]
    clip = clip.assign(T=clip.task_options.map(lambda s: json.loads(s).get("T", 100)))
    for _, r in clip.sort_values(["T", "lr", "clip", "seed"]).iterrows():
        acc = "-" if r["accuracy"] != r["accuracy"] else f"{r['accuracy']:.3f}"
        loss = "-" if r["loss"] != r["loss"] else f"{r['loss']:.3g}"
        lines.append(
            f"| {r['T']} | {r['lr']} | {r['clip']} | {r['seed']} | {r['status']} | {r['error'] if isinstance(r['error'], str) else ''} | {loss} | {acc} |"
        )
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
