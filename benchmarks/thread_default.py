"""Row 1 of issue 20: the default thread count against fixed ones, quiet and beside one busy process.

    python benchmarks/thread_default.py [--steps 40] [--repeats 1] [--out results/reference/threads.md]

Runs README command 1 (`seqbench run --task copy --model ntm`, shortened with --steps) under each setting
and reads train tokens/s from the stored row (the same figure the command prints):

- default      what `seqbench run` does without --threads (OMP_WAIT_POLICY=PASSIVE, 1-or-N probe)
- threads 1    --threads 1
- threads N    --threads N (N = torch's default count), passive waiting
- old default  torch's N threads with OpenMP's default waiting (what seqbench did before)

each quiet and with one competing `python -c "while True: pass"`. Settings alternate within a repeat, so
a change in the machine's load hits them alike; on a shared machine read the ratios, not the figures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def one_run(args: list[str], env: dict[str, str], steps: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as results:
        cmd = ["seqbench", "run", "--task", "copy", "--model", "ntm", "--steps", str(steps), *args]
        subprocess.run([*cmd, "--results", results], env=env, check=True, capture_output=True)
        row = pd.read_parquet(Path(results) / "runs").iloc[0]
        return float(row["train_tokens_per_s"]), int(row["threads"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out")
    opts = parser.parse_args()
    import torch

    n = torch.get_num_threads()
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    settings = {
        "default": ([], base),
        "threads 1": (["--threads", "1"], base),
        f"threads {n}": (["--threads", str(n)], base),
        # An empty OMP_WAIT_POLICY is ignored by OpenMP (its own default) and not replaced by the CLI.
        f"old default ({n}, OpenMP's waiting)": ([], {**base, "OMP_WAIT_POLICY": ""}),
    }
    rows = []
    for condition in ("quiet", "one busy process"):
        hog = None
        if condition != "quiet":
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1)
        try:
            for repeat in range(opts.repeats):
                for name, (args, env) in settings.items():
                    if name.startswith("old default"):
                        args = ["--threads", str(n)]  # the old default ran torch's N threads
                    tps, threads = one_run(args, env, opts.steps)
                    rows.append(
                        {
                            "condition": condition,
                            "setting": name,
                            "repeat": repeat,
                            "tok/s": tps,
                            "threads": threads,
                        }
                    )
                    print(rows[-1], flush=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
    df = (
        pd.DataFrame(rows)
        .groupby(["condition", "setting"], sort=False)
        .agg(tok_s=("tok/s", "median"), threads=("threads", lambda t: "/".join(map(str, sorted(set(t))))))
        .reset_index()
    )
    lines = [
        "| condition | setting | train tok/s | threads used | vs better of 1 and N |",
        "|---|---|---|---|---|",
    ]
    for condition, g in df.groupby("condition", sort=False):
        best = g[g["setting"].isin(["threads 1", f"threads {n}"])]["tok_s"].max()
        for r in g.itertuples():
            lines.append(
                f"| {condition} | {r.setting} | {r.tok_s:,.0f} | {r.threads} | {r.tok_s / best:.2f} |"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if opts.out:
        Path(opts.out).write_text(text)


if __name__ == "__main__":
    main()
