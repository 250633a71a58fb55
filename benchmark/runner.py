"""One run: build task and model from a config, train, evaluate, measure, store one row.

    spec -> task, network -> [sample -> forward -> masked loss -> backward -> clip -> step] x steps
         -> every `eval_every` steps: fixed, seeded evaluation sets at every evaluation length
         -> result row + learning curve -> results/ (atomic, one file per run)

Failures are results too: a NaN loss stores `diverged`, running out of memory `oom`, an exception `error`
(with its message), Ctrl-C `interrupted`; each with everything measured so far.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import seqbench
from seqbench.config import RunConfig, TrainConfig, resolve_run_config, version_of
from seqbench.errors import SeqbenchError, UnstoredRunError
from seqbench.metrics import (
    PeakMemory,
    device_name,
    environment,
    git_sha,
    kernels,
    one_off_seconds,
    reset_kernels,
)
from seqbench.network import build_network, state_floats
from seqbench.registry import MODELS, TASKS
from seqbench.store import check_writable, new_run_id, write_run
from seqbench.threads import ThreadProbe

#: Evaluation sets depend on the task and the length only, never on the run's seed: every model and
#: every seed is judged on the same sequences.
EVAL_SEED = 2_147_483_629


@dataclass
class Progress:
    """What the runner tells its progress display; `update` is called after every step."""

    total_steps: int
    step: int = 0
    loss: float = float("nan")
    accuracy: float = float("nan")
    tokens_per_s: float = 0.0


ProgressCallback = Callable[[Progress, bool], None]  # (state, just evaluated)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SeqbenchError(
            "--device cuda was asked for, but torch sees no CUDA device. Use --device cpu or auto."
        )
    return device


def make_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    if cfg.optimizer == "rmsprop":
        # Graves' RMSProp as used for the NTM: centred, decay 0.95 (PyTorch's `alpha`), with momentum.
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.95, momentum=cfg.momentum, centered=True)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)


def _clip(params: list[torch.nn.Parameter], cfg: TrainConfig) -> None:
    if cfg.clip == "norm":
        torch.nn.utils.clip_grad_norm_(params, cfg.clip_value)
    elif cfg.clip == "value":
        torch.nn.utils.clip_grad_value_(params, cfg.clip_value)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Evaluator:
    """Fixed evaluation sets, one per evaluation length, generated once per run from EVAL_SEED."""

    def __init__(self, task: Any, size: int, device: torch.device, chunk: int = 256) -> None:
        self.task = task
        self.sets = {}
        for length in task.eval_lengths:
            gen = torch.Generator(device=device).manual_seed(EVAL_SEED + length)
            self.sets[length] = [
                task.sample(min(chunk, size - start), length, gen) for start in range(0, size, chunk)
            ]

    @torch.no_grad()
    def __call__(
        self, net: torch.nn.Module, device: torch.device, lengths: list[int] | None = None
    ) -> tuple[dict[int, dict[str, float]], float, int]:
        """Metrics per length (means over sequences), the forward time in seconds and the tokens it read,
        at the given lengths (default: every evaluation length)."""
        was_training = net.training
        net.eval()
        results: dict[int, dict[str, float]] = {}
        elapsed, tokens = 0.0, 0
        for length in lengths or list(self.sets):
            sums: dict[str, float] = {}
            n = 0
            for batch in self.sets[length]:
                tokens += batch.batch_size * batch.steps
                _sync(device)
                t0 = time.perf_counter()
                out = net(batch.inputs)
                _sync(device)
                elapsed += time.perf_counter() - t0
                m = self.task.metrics(out, batch)
                m["loss"] = float(self.task.loss(out, batch))
                for k, v in m.items():
                    sums[k] = sums.get(k, 0.0) + v * batch.batch_size
                n += batch.batch_size
            results[length] = {k: v / n for k, v in sums.items()}
        net.train(was_training)
        return results, elapsed, tokens


def run(
    config: RunConfig,
    results_dir: str | Path = "results",
    on_progress: ProgressCallback | None = None,
    store: bool = True,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Train and evaluate one configuration; store and return its result row.

    Usage errors (unknown names, invalid options) raise before anything is stored. Anything that goes
    wrong after that is stored in the row's `status`/`error`; KeyboardInterrupt is stored then re-raised.
    """
    # Configuration errors (unknown names, a provider that fails to import, bad options) raise here,
    # before anything is stored.
    config = resolve_run_config(config)
    cfg = config.train
    task = TASKS.get(config.task)(**config.task_options)
    device = resolve_device(config.device)
    if store:
        check_writable(results_dir)  # a read-only store fails now (exit 2), not after training
    threads_before = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)  # restored below: later runs in this process are not affected
    try:
        return _run(config, task, device, results_dir, on_progress, store, run_id)
    finally:
        torch.set_num_threads(threads_before)


def _run(
    config: RunConfig,
    task: Any,
    device: torch.device,
    results_dir: str | Path,
    on_progress: ProgressCallback | None,
    store: bool,
    run_id: str | None,
) -> dict[str, Any]:
    cfg = config.train

    reset_kernels()  # `kernels` in the row names the loop implementations this run used
    row = base_row(config, task, device)
    if run_id is not None:
        row["run_id"] = run_id
    curve: list[dict[str, Any]] = []
    memory = PeakMemory(device)
    interrupted: BaseException | None = None
    wall0 = time.perf_counter()
    train_time = 0.0
    data_time = eval_time = 0.0  # batch generation inside the training steps; every evaluation
    timed_time, timed_tokens = 0.0, 0
    step = samples = tokens = 0
    last_eval: dict[int, dict[str, float]] = {}
    infer_time, infer_tokens = 0.0, 0
    recorded: set[tuple[int, int]] = set()  # (step, length) already in the curve

    def evaluate(net: torch.nn.Module, every_length: bool) -> None:
        """During training only the training length (solving and the learning curve need nothing
        more; every length costs about ten times as much, which the loop's overhead budget of 5% does
        not allow); every evaluation length at the end."""
        nonlocal last_eval, infer_time, infer_tokens, eval_time
        lengths = None if every_length else [task.train_length]
        t0 = time.perf_counter()
        last_eval, infer_time, infer_tokens = evaluator(net, device, lengths)
        for length, metrics in last_eval.items():
            if (step, length) in recorded:  # the final evaluation right after one at this step
                continue
            recorded.add((step, length))
            for metric, value in metrics.items():
                curve.append(
                    _curve_point(row["run_id"], step, samples, train_time, "eval", length, metric, value)
                )
        main = last_eval[task.train_length]
        acc = main["accuracy"]
        if not row["solved"] and task.solved(main, cfg.solve_threshold):
            row.update(solved=True, steps_to_solve=step, samples_to_solve=samples, time_to_solve_s=train_time)
        state.accuracy = acc
        eval_time += time.perf_counter() - t0

    state = Progress(total_steps=cfg.steps)
    # No --threads on the CPU: the faster of 1 and N threads, probed in the warm-up steps (seqbench.threads).
    probe = ThreadProbe() if cfg.threads is None and device.type == "cpu" else ThreadProbe(many=1)
    timed_after = max(cfg.warmup_steps, probe.steps)
    try:
        memory.start()
        torch.manual_seed(config.seed)
        net = build_network(task, config.model, cfg.hidden_size, config.model_options).to(device)
        row["params"] = sum(p.numel() for p in net.parameters())
        if cfg.compile:  # compiles on the first step of each new input shape: counted in train_time_s
            net.core = torch.compile(net.core, dynamic=True)
        row["state_size"], row["state_per_step"] = state_floats(net.core, task.train_length)
        params = [p for p in net.parameters() if p.requires_grad]
        optimizer = make_optimizer(params, cfg)
        gen = torch.Generator(device=device).manual_seed(config.seed)
        evaluator = Evaluator(task, cfg.eval_size, device)

        loss_sum, loss_n = 0.0, 0
        while step < cfg.steps:
            probe.before_step()
            _sync(device)
            one_off0 = one_off_seconds()
            t0 = time.perf_counter()
            batch = task.sample(cfg.batch_size, task.sample_length(gen), gen)
            data_time += time.perf_counter() - t0
            loss = task.loss(net(batch.inputs), batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            _clip(params, cfg)
            optimizer.step()
            loss_value = loss.item()  # synchronises
            # One-off costs inside the step (building the C++ loops on first use) stay in wall time only.
            dt = time.perf_counter() - t0 - (one_off_seconds() - one_off0)
            probe.after_step(dt)
            step += 1
            samples += batch.batch_size
            tokens += batch.batch_size * batch.steps
            train_time += dt
            if step > timed_after:
                timed_time += dt
                timed_tokens += batch.batch_size * batch.steps
            if not math.isfinite(loss_value):
                row.update(status="diverged", error=f"loss became {loss_value} at step {step}")
                break
            loss_sum, loss_n = loss_sum + loss_value, loss_n + 1
            state.step, state.loss = step, loss_value
            state.tokens_per_s = timed_tokens / timed_time if timed_time > 0 else tokens / train_time
            evaluated = step % cfg.eval_every == 0 or step == cfg.steps
            if evaluated:
                curve.append(
                    _curve_point(
                        row["run_id"], step, samples, train_time, "train", None, "loss", loss_sum / loss_n
                    )
                )
                loss_sum, loss_n = 0.0, 0
                if step < cfg.steps:  # the last step gets the full evaluation below
                    evaluate(net, every_length=False)
            if on_progress:
                on_progress(state, evaluated)
            if row["solved"]:
                break
        if row["status"] == "ok":
            evaluate(net, every_length=True)  # the final figures describe the final model at every length
    except KeyboardInterrupt as exc:
        row.update(status="interrupted", error="interrupted by the user (KeyboardInterrupt)")
        interrupted = exc
    except (torch.OutOfMemoryError, MemoryError) as exc:
        row.update(status="oom", error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        oom = is_out_of_memory(exc)
        trace = "" if oom else f"\n{traceback.format_exc(limit=8)}"
        row.update(status="oom" if oom else "error", error=f"{type(exc).__name__}: {exc}{trace}")

    row["peak_memory_bytes"] = memory.stop()
    row.update(
        steps=step,
        samples_seen=samples,
        tokens_seen=tokens,
        train_time_s=train_time,
        data_time_s=data_time,
        eval_time_s=eval_time,
        wall_time_s=time.perf_counter() - wall0,
        kernels=kernels(),
        threads=torch.get_num_threads(),
        train_tokens_per_s=(timed_tokens / timed_time)
        if timed_time > 0
        else (tokens / train_time if train_time else None),
    )
    if last_eval:
        main = last_eval[task.train_length]
        row.update(
            accuracy=main["accuracy"],
            loss=main["loss"],
            metrics=json.dumps(
                {k: v for k, v in main.items() if k not in ("accuracy", "loss")}, sort_keys=True
            ),
            accuracy_by_length=json.dumps({str(k): v["accuracy"] for k, v in last_eval.items()}),
            infer_tokens_per_s=infer_tokens / infer_time if infer_time > 0 else None,
        )
    if store:
        store_or_fall_back(results_dir, row, curve)
    if interrupted is not None:
        raise interrupted
    return row


#: Messages of allocation failures that torch raises as a plain RuntimeError (the CPU allocator), not as
#: torch.OutOfMemoryError.
_OOM_MESSAGES = ("can't allocate memory", "not enough memory", "out of memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """An allocation failure, whatever type it came as (the CPU allocator raises RuntimeError)."""
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MESSAGES)


def store_or_fall_back(results_dir: str | Path, row: dict[str, Any], curve: list[dict[str, Any]]) -> None:
    """Store the run; if the store fails now (it was writable when the run started: a full disk, a
    remount), store it under the fallback directory instead and raise UnstoredRunError naming it: a finished
    run is never lost."""
    try:
        write_run(results_dir, row, curve)
    except OSError as exc:
        fallback = fallback_dir()
        write_run(fallback, row, curve)
        raise UnstoredRunError(
            f"Could not store the run under {results_dir}/ ({exc.strerror or exc}); it is stored under "
            f"{fallback}/ instead: {fallback}/runs/{row['run_id']}.parquet (move runs/ and curves/ files "
            f"into {results_dir}/ to merge it).",
            row,
        ) from exc


def fallback_dir() -> Path:
    """Where a run goes when its store fails at the end: $SEQBENCH_FALLBACK_DIR, else a folder in the
    system's temporary directory."""
    import os
    import tempfile

    return Path(os.environ.get("SEQBENCH_FALLBACK_DIR") or Path(tempfile.gettempdir()) / "seqbench-unstored")


def _curve_point(run_id, step, samples, train_time, split, length, metric, value) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "step": step,
        "samples_seen": samples,
        "train_time_s": train_time,
        "split": split,
        "length": length,
        "metric": metric,
        "value": float(value),
    }


def failed_row(config: RunConfig, error: str, status: str = "error") -> dict[str, Any]:
    """A row for a run that died without storing anything itself (e.g. its worker process was killed)."""
    config = resolve_run_config(config)
    task = TASKS.get(config.task)(**config.task_options)
    row = base_row(config, task, resolve_device(config.device))
    row.update(status=status, error=error)
    return row


def base_row(config: RunConfig, task: Any, device: torch.device) -> dict[str, Any]:
    """Every column of a result row, filled with what is known before training."""
    chance = task.chance(task.train_length).get("accuracy")
    return {
        "run_id": new_run_id(),
        "kind": "run",
        "created_at": datetime.now(timezone.utc),
        "seqbench_version": seqbench.__version__,
        "git_sha": git_sha(),
        "config_hash": config.config_hash(),
        "task": config.task,
        "task_options": json.dumps(config.task_options, sort_keys=True, default=str),
        "task_provider": TASKS.provider(config.task).spec,
        "task_version": version_of(TASKS.get(config.task)),
        "model": config.model,
        "model_options": json.dumps(config.model_options, sort_keys=True, default=str),
        "model_provider": MODELS.provider(config.model).spec,
        "model_version": version_of(MODELS.get(config.model)),
        "seed": config.seed,
        "preset": config.preset,
        "train_config": config.train.model_dump_json(),
        "device": device.type,
        "device_name": device_name(device),
        "dtype": "float32",
        **environment(),
        "threads": torch.get_num_threads(),
        "hidden_size": config.train.hidden_size,
        "params": None,
        "state_size": None,
        "state_per_step": None,
        "steps": 0,
        "samples_seen": 0,
        "tokens_seen": 0,
        "train_time_s": 0.0,
        "data_time_s": 0.0,
        "eval_time_s": 0.0,
        "wall_time_s": 0.0,
        "status": "ok",
        "error": None,
        "train_tokens_per_s": None,
        "infer_tokens_per_s": None,
        "peak_memory_bytes": None,
        "memory_kind": "cuda" if device.type == "cuda" else "cpu",
        "accuracy": None,
        "loss": None,
        "metrics": None,
        "accuracy_by_length": None,
        "chance_accuracy": chance,
        "train_length": task.train_length,
        "solved": False,
        "steps_to_solve": None,
        "samples_to_solve": None,
        "time_to_solve_s": None,
        "target_params": config.params_target,
    }
