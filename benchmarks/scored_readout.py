"""MQAR's training step with the read-out at every step (the form before issue 18) against the read-out at
the scored steps only (`network.scored_forward`, the runner's step now), in one process on the same batches.

    python benchmarks/scored_readout.py [--model lstm] [--preset quick] [--steps 30] [--rounds 3]

The quick preset's configuration (H = 128, batch 32, Zoology's training mix of (T, N) up to (256, 64),
V = 8,192), one torch thread. Both forms train from the same initialisation on the same batches; the
rounds alternate (full, scored, full, scored, ...) so that a change of machine load hits both. Prints train
tokens/s of each form per round, the median ratio, and the first losses of both (they agree to float32
rounding).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from seqbench.network import scored_forward
from seqbench.training import Training, clip_gradients, training_config


def full_step(training: Training, batch) -> torch.Tensor:
    """The BPTT step as it was: the read-out at every step, then the task's masked loss."""
    loss = training.task.loss(training.net(batch.inputs), batch)
    training.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip_gradients(training.params, training.config)
    training.optimizer.step()
    return loss


def scored_step(training: Training, batch) -> torch.Tensor:
    outputs, cut = scored_forward(training.net, training.task, batch)
    loss = training.task.loss(outputs, cut)
    training.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip_gradients(training.params, training.config)
    training.optimizer.step()
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mqar")
    parser.add_argument("--model", default="lstm")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = training_config(args.task, args.model, "cpu", None, preset=args.preset)
    task = config.make_task()
    gen = torch.Generator().manual_seed(config.seed)
    batches = [task.sample(config.train.batch_size, task.sample_length(gen), gen) for _ in range(args.steps)]
    tokens = sum(b.batch_size * b.steps for b in batches)
    rates: dict[str, list[float]] = {"full": [], "scored": []}
    losses: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, step in (("full", full_step), ("scored", scored_step)):
            training = Training.build(config, task, torch.device("cpu"))
            t0 = time.perf_counter()
            run = [step(training, b).item() for b in batches]
            rates[name].append(tokens / (time.perf_counter() - t0))
            losses.setdefault(name, run)
    print(
        f"{args.task} / {args.model}, preset {args.preset}: H = {config.train.hidden_size}, "
        f"batch {config.train.batch_size}, {args.steps} steps ({tokens:,} tokens) per round"
    )
    for name, r in rates.items():
        print(f"  {name:6s} train tokens/s: " + ", ".join(f"{x:,.0f}" for x in r))
    ratio = statistics.median(s / f for s, f in zip(rates["scored"], rates["full"], strict=True))
    print(f"  scored / full, median over rounds: {ratio:.2f}x")
    print("  first losses, full:   " + " ".join(f"{x:.6f}" for x in losses["full"][:4]))
    print("  first losses, scored: " + " ".join(f"{x:.6f}" for x in losses["scored"][:4]))


if __name__ == "__main__":
    main()
