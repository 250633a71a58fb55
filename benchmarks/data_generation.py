"""How much of a training step goes to generating the batch, for every registered task.

    python benchmarks/data_generation.py

Per task: median time of `task.sample(32, longest training length)` against an LSTM (hidden 128) forward,
backward and Adam step on that batch, one torch thread, 20 measured steps after 3 warm-ups.
"""

from __future__ import annotations

import statistics
import time

import torch

import seqbench
from seqbench.network import build_network
from seqbench.registry import TASKS


def main() -> None:
    torch.set_num_threads(1)
    print(f"{'task':<20} {'T':>5} {'sample ms':>10} {'step ms':>9} {'gen/step':>9}")
    for name in TASKS.names():
        task = seqbench.load_task(name)
        length = task.train_lengths[1]
        net = build_network(task, "lstm", 128, {})
        opt = torch.optim.Adam(net.parameters(), 1e-3)
        gen = torch.Generator().manual_seed(0)
        sample_s, step_s = [], []
        for i in range(23):
            t0 = time.perf_counter()
            batch = task.sample(32, length, gen)
            t1 = time.perf_counter()
            loss = task.loss(net(batch.inputs), batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            t2 = time.perf_counter()
            if i >= 3:
                sample_s.append(t1 - t0)
                step_s.append(t2 - t1)
        g, s = statistics.median(sample_s), statistics.median(step_s)
        print(f"{name:<20} {batch.steps:>5} {g * 1e3:>10.2f} {s * 1e3:>9.1f} {g / (g + s):>9.1%}")


if __name__ == "__main__":
    main()
