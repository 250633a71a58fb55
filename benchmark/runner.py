"""One run: build task and model from a config, train, evaluate, measure, store one row.

    config -> task, Training (network, optimiser, trainer)
           -> [sample a batch -> training.step(batch)] x steps          (seqbench.training: one step)
           -> every `eval_every` steps: a fixed, seeded evaluation set at the training length
           -> at the end: every evaluation length
           -> result row + learning curve -> results/ (atomic, one file per run)

`RunState` holds what the run has measured so far; the row's figures are read off it once, at the end.

Failures are results too: a NaN loss stores `diverged`, running out of memory `oom`, an exception `error`
(with its message), Ctrl-C `interrupted`; each with everything measured so far.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqbench.columns import run_defaults
from seqbench.config import RunConfig, resolve_run_config, version_of
from seqbench.errors import SeqbenchError, UnstoredRunError
from seqbench.memory import PeakMemory, memory_kind
from seqbench.network import scored_forward, state_floats
from seqbench.provenance import kernels, one_off_seconds, provenance, reset_kernels
from seqbench.registry import MODELS, TASKS
from seqbench.store import check_writable, new_run_id, write_run
from seqbench.threads import ThreadProbe
from seqbench.training import Training, count_parameters, sync

#: Evaluation sets depend on the task and the length only, never on the run's seed: every model and
#: every seed is judged on the same sequences.
EVAL_SEED = 2_147_483_629
#: The validation set's seed, apart from the test set's (EVAL_SEED) and from any run's training seed: what a
#: study chooses its learning rate on (`val_accuracy`), and what `train.monitor = "validation"` watches.
VAL_SEED = 1_000_000_007


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


class Evaluator:
    """Fixed evaluation sets, one per evaluation length, generated once per run from EVAL_SEED (the test
    sets), or from another seed at other lengths (the validation set: VAL_SEED, the training length)."""

    def __init__(
        self,
        task: Any,
        size: int,
        device: torch.device,
        chunk: int = 256,
        seed: int = EVAL_SEED,
        lengths: list[int] | None = None,
    ) -> None:
        self.task = task
        self.sets = {}
        for length in lengths or task.eval_lengths:
            gen = torch.Generator(device=device).manual_seed(seed + length)
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
                sync(device)
                t0 = time.perf_counter()
                out, scored = scored_forward(net, self.task, batch)  # read-out where scored
                sync(device)
                elapsed += time.perf_counter() - t0
                m = self.task.metrics(out, scored)
                m["loss"] = float(self.task.loss(out, scored))
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
    task = config.make_task()
    device = resolve_device(config.device)
    if store:
        check_writable(results_dir)  # a read-only store fails now (exit 2), not after training
    threads_before = torch.get_num_threads()
    if config.train.threads is not None:
        torch.set_num_threads(config.train.threads)  # restored below: later runs are not affected
    try:
        reset_kernels()  # `kernels` in the row names the loop implementations this run used
        row = base_row(config, task, device)
        if run_id is not None:
            row["run_id"] = run_id
        state = RunState(config, task, device, row, on_progress)
        interrupted = state.execute()
        if store:
            store_or_fall_back(results_dir, row, state.curve)
        if interrupted is not None:
            raise interrupted
        return row
    finally:
        torch.set_num_threads(threads_before)


@dataclass
class RunState:
    """One run in progress: what it has measured so far, and the row those figures end up in.

    `execute` trains, evaluates and fills the row; the counters below are its only state."""

    config: RunConfig
    task: Any
    device: torch.device
    row: dict[str, Any]
    on_progress: ProgressCallback | None = None
    step: int = 0
    samples: int = 0
    tokens: int = 0
    train_time: float = 0.0  # in training steps (batch generation included, evaluation not)
    data_time: float = 0.0  # of which generating batches
    eval_time: float = 0.0  # in evaluations
    timed_time: float = 0.0  # training steps after the warm-up: what tokens/s counts
    timed_tokens: int = 0
    infer_time: float = 0.0  # the latest evaluation's forward passes
    infer_tokens: int = 0
    last_eval: dict[int, dict[str, float]] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)
    recorded: set[tuple[int, int]] = field(default_factory=set)  # (step, length) already in the curve
    recorded_val: set[tuple[int, int]] = field(default_factory=set)  # the same, on the validation set
    last_val: dict[str, float] = field(default_factory=dict)

    def execute(self) -> BaseException | None:
        """Train and evaluate, then fill the row. Failures are stored as the row's status; a
        KeyboardInterrupt is returned so that the caller stores the row before re-raising it."""
        interrupted: BaseException | None = None
        memory = PeakMemory(self.device)
        wall0 = time.perf_counter()
        try:
            memory.start()
            self.train()
        except KeyboardInterrupt as exc:
            self.row.update(status="interrupted", error="interrupted by the user (KeyboardInterrupt)")
            interrupted = exc
        except (torch.OutOfMemoryError, MemoryError) as exc:
            self.row.update(status="oom", error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:
            oom = is_out_of_memory(exc)  # the CPU allocator's failure is a RuntimeError
            trace = "" if oom else f"\n{traceback.format_exc(limit=8)}"
            self.row.update(status="oom" if oom else "error", error=f"{type(exc).__name__}: {exc}{trace}")
        self.row["peak_memory_bytes"] = memory.stop()
        self.row.update(
            steps=self.step,
            samples_seen=self.samples,
            tokens_seen=self.tokens,
            train_time_s=self.train_time,
            data_time_s=self.data_time,
            eval_time_s=self.eval_time,
            wall_time_s=time.perf_counter() - wall0,
            kernels=kernels(),
            threads=torch.get_num_threads(),  # the count that ran (the thread probe's choice)
            train_tokens_per_s=self.train_tokens_per_s(),
        )
        if self.last_eval:
            summary = getattr(self.task, "summary", None)  # plugin tasks may not derive from Task
            main = summary(self.last_eval) if summary is not None else self.last_eval[self.task.train_length]
            self.row.update(
                accuracy=main["accuracy"],
                loss=main["loss"],
                metrics=json.dumps(
                    {k: v for k, v in main.items() if k not in ("accuracy", "loss")}, sort_keys=True
                ),
                accuracy_by_length=json.dumps({str(k): v["accuracy"] for k, v in self.last_eval.items()}),
                infer_tokens_per_s=self.infer_tokens / self.infer_time if self.infer_time > 0 else None,
            )
        return interrupted

    def train_tokens_per_s(self) -> float | None:
        """Training tokens/s: after the warm-up steps where there were any, else over every step."""
        if self.timed_time > 0:
            return self.timed_tokens / self.timed_time
        return self.tokens / self.train_time if self.train_time > 0 else None

    def train(self) -> None:
        cfg, task, device = self.config.train, self.task, self.device
        training = Training.build(self.config, task, device)
        self.row["params"] = count_parameters(training.net)
        self.row["state_size"], self.row["state_per_step"] = state_floats(
            training.net.core, task.train_length
        )
        gen = torch.Generator(device=device).manual_seed(self.config.seed)
        evaluator = Evaluator(task, cfg.eval_size, device)
        validation = Evaluator(task, cfg.eval_size, device, seed=VAL_SEED, lengths=[task.train_length])
        # What the evaluations during training (learning curve, solve, early stop) read: the test set, or with
        # `monitor = "validation"` the validation set, so that nothing chosen during training saw the test set.
        watched, split = (validation, "val") if cfg.monitor == "validation" else (evaluator, "eval")
        chance_on = getattr(task, "chance_on", None)  # plugin tasks may not derive from Task
        if chance_on is not None:
            chance = chance_on(task.train_length, evaluator.sets[task.train_length])
            self.row.update(
                chance_accuracy=chance.get("accuracy"), chance_metrics=json.dumps(chance, sort_keys=True)
            )
        progress = Progress(total_steps=cfg.steps)
        # No --threads on the CPU: the faster of 1 and N threads, probed in the warm-up steps (seqbench.threads)
        probe = ThreadProbe() if cfg.threads is None and device.type == "cpu" else ThreadProbe(many=1)
        timed_after = max(cfg.warmup_steps, probe.steps)
        loss_sum, loss_n = 0.0, 0
        while self.step < cfg.steps:
            probe.before_step()
            sync(device)
            one_off0 = one_off_seconds()
            t0 = time.perf_counter()
            batch = training.sample(gen)
            self.data_time += time.perf_counter() - t0
            loss = training.step(batch)
            # One-off work inside the step (building the C++ loops on first use) stays in wall time only.
            dt = time.perf_counter() - t0 - (one_off_seconds() - one_off0)
            probe.after_step(dt)
            self.row["updates"] = getattr(training.trainer, "updates", self.step + 1)
            self.step += 1
            self.samples += batch.batch_size
            self.tokens += batch.batch_size * batch.steps
            self.train_time += dt
            if self.step > timed_after:
                self.timed_time += dt
                self.timed_tokens += batch.batch_size * batch.steps
            if not math.isfinite(loss):
                self.row.update(status="diverged", error=f"loss became {loss} at step {self.step}")
                return
            loss_sum, loss_n = loss_sum + loss, loss_n + 1
            progress.step, progress.loss = self.step, loss
            progress.tokens_per_s = self.train_tokens_per_s() or 0.0
            evaluated = self.step % cfg.eval_every == 0 or self.step == cfg.steps
            if evaluated:
                self.curve.append(self._point("train", None, "loss", loss_sum / loss_n))
                loss_sum, loss_n = 0.0, 0
                if self.step < cfg.steps or split == "val":  # the last step gets the full evaluation below
                    progress.accuracy = self.evaluate(training.net, watched, [task.train_length], split)
            if self.on_progress:
                self.on_progress(progress, evaluated)
            if self.row["solved"]:
                break
        # The final figures: the final model at every length of the test set, and on the validation set.
        self.evaluate(training.net, evaluator, None, "eval", judge=split == "eval")
        self.validate(training.net, validation, split == "val")

    def validate(self, net: torch.nn.Module, validation: Evaluator, watched: bool) -> None:
        """The final model on the validation set: `val_accuracy` and `val_loss` (what a study picks its
        learning rate on); in the learning curve too, unless the last evaluation during training did it."""
        if watched and (self.step, self.task.train_length) in self.recorded_val:
            metrics = self.last_val
        else:
            t0 = time.perf_counter()
            results, _, _ = validation(net, self.device, [self.task.train_length])
            metrics = results[self.task.train_length]
            self.eval_time += time.perf_counter() - t0
            for metric, value in metrics.items():
                self.curve.append(self._point("val", self.task.train_length, metric, value))
        self.row.update(val_accuracy=metrics.get("accuracy"), val_loss=metrics.get("loss"))

    def evaluate(
        self,
        net: torch.nn.Module,
        evaluator: Evaluator,
        lengths: list[int] | None,
        split: str = "eval",
        judge: bool = True,
    ) -> float:
        """Evaluate at `lengths` (None: every evaluation length), add the curve points (`split`: eval for
        the test set, val for the validation set), note a solve (unless not `judge`); the accuracy at the
        training length. During training only the training length is evaluated (solving and the learning
        curve need nothing more; every length costs about ten times as much, which the loop's overhead
        budget of 5% does not allow); every evaluation length at the end."""
        t0 = time.perf_counter()
        results, infer_time, infer_tokens = evaluator(net, self.device, lengths)
        if split == "eval":
            self.last_eval, self.infer_time, self.infer_tokens = results, infer_time, infer_tokens
        else:
            self.last_val = results[self.task.train_length]
        recorded = self.recorded if split == "eval" else self.recorded_val
        for length, metrics in results.items():
            if (self.step, length) in recorded:  # the final evaluation right after one at this step
                continue
            recorded.add((self.step, length))
            for metric, value in metrics.items():
                self.curve.append(self._point(split, length, metric, value))
        main = results[self.task.train_length]
        if judge and not self.row["solved"] and self.task.solved(main, self.config.train.solve_threshold):
            self.row.update(
                solved=True,
                steps_to_solve=self.step,
                samples_to_solve=self.samples,
                time_to_solve_s=self.train_time,
            )
        self.eval_time += time.perf_counter() - t0
        return main["accuracy"]

    def _point(self, split: str, length: int | None, metric: str, value: float) -> dict[str, Any]:
        return {
            "run_id": self.row["run_id"],
            "step": self.step,
            "samples_seen": self.samples,
            "train_time_s": self.train_time,
            "split": split,
            "length": length,
            "metric": metric,
            "value": float(value),
        }


def failed_row(config: RunConfig, error: str, status: str = "error") -> dict[str, Any]:
    """A row for a run that died without storing anything itself (e.g. its worker process was killed)."""
    config = resolve_run_config(config)
    task = config.make_task()
    row = base_row(config, task, resolve_device(config.device))
    row.update(status=status, error=error)
    return row


def base_row(config: RunConfig, task: Any, device: torch.device) -> dict[str, Any]:
    """Every column of a result row (`seqbench.columns.RUN_COLUMNS`), with what is known before training."""
    chance = task.chance(task.train_length)
    return {
        **run_defaults(),
        **provenance(device),
        "run_id": new_run_id(),
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
        "trainer": config.train.trainer,
        "trainer_options": json.dumps(config.train.trainer_options, sort_keys=True, default=str),
        "stream_episodes": config.train.stream,
        "hidden_size": config.train.hidden_size,
        "memory_kind": memory_kind(device),
        "chance_accuracy": chance.get("accuracy"),
        "chance_metrics": json.dumps(chance, sort_keys=True),  # replaced by the figure on the scored set
        "train_length": task.train_length,
        "target_params": config.params_target,
        "target_state": config.state_target,
    }


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
