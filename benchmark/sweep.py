"""Sweeps: tasks x models x grid x parameter targets x seeds, one after another or as Dask tasks.

    seqbench sweep --task copy --task adding --model lstm --model gru --seeds 3
    seqbench sweep --config sweep.yaml --executor dask --jobs 2

The same function runs every configuration on either executor. A sweep first drops what is already
stored with status ok (by config_hash and seed), so an interrupted sweep resumes where it stopped;
`rerun=True` runs everything again. A run that fails is stored with its status and the sweep goes on.

Dask: a `LocalCluster` of `jobs` single-threaded worker processes, or an existing cluster at `scheduler`
(one started by dask-jobqueue on SLURM, say). On a local cluster a worker that dies mid-run (killed, out of
memory) fails only that run: the scheduler does not retry by itself (allowed-failures 0); the sweep
resubmits a run whose worker died once (it may only have shared the dying worker) and stores an `error`
row if it dies again. Runs are idempotent under their run_id, so a re-execution never stores twice. An
external scheduler keeps its own retry setting.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from seqbench.config import RunConfig, TrainConfig, make_run_config
from seqbench.errors import OptionsError, SeqbenchError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

Event = Callable[[str, RunConfig, dict[str, Any]], None]  # ("start" | "done", config, result)


class SweepSpec(BaseModel):
    """What to run. Grid keys: a training setting (`lr`), or `task.KEY` / `model.KEY` for an option."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    seeds: int | list[int] = 1  # N means seeds 0..N-1
    preset: Literal["smoke", "quick", "paper"] = "quick"
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    params: list[int] = Field(default_factory=list)  # parameter-count targets; empty: the preset's width
    task_options: dict[str, Any] = Field(default_factory=dict)
    model_options: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)  # fixed training settings (steps, lr, ...)
    device: str = "auto"
    executor: Literal["serial", "dask"] = "serial"
    jobs: int | None = Field(None, ge=1)
    scheduler: str | None = None
    threads: int | None = Field(None, ge=1)  # torch threads per run; Dask workers default to 1
    rerun: bool = False
    same_process: bool = False  # serial: run in this process (no fresh process per run)
    results: str = "results"

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """A sweep file, YAML or TOML, with the same keys as SweepSpec."""
    path = Path(path)
    text = path.read_text()
    if path.suffix in (".toml",):
        return tomllib.loads(text)
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise OptionsError(
                f"{path}: a sweep file holds a mapping of settings, got {type(data).__name__}."
            )
        return data
    raise OptionsError(f"{path}: sweep files are .yaml, .yml or .toml.")


def make_spec(values: dict[str, Any]) -> SweepSpec:
    try:
        return SweepSpec(**values)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {'unknown setting' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        )
        raise OptionsError(f"Invalid sweep: {problems}.") from None


def expand(spec: SweepSpec) -> list[RunConfig]:
    """Every configuration of the sweep, in a stable order (task, model, grid point, size, seed)."""
    train_keys = set(TrainConfig.model_fields)
    for key in spec.grid:
        scope, _, name = key.partition(".")
        if not ((scope in ("task", "model") and name) or key in train_keys):
            raise OptionsError(
                f"Grid key {key!r} is neither a training setting ({', '.join(sorted(train_keys))}) "
                "nor task.OPTION / model.OPTION."
            )
    keys = list(spec.grid)
    configs = []
    for task_name, model_name in itertools.product(spec.tasks, spec.models):
        for values in itertools.product(*(spec.grid[k] for k in keys)):
            point = dict(zip(keys, values, strict=True))
            task_opts = {**spec.task_options, **{k[5:]: v for k, v in point.items() if k.startswith("task.")}}
            model_opts = {
                **spec.model_options,
                **{k[6:]: v for k, v in point.items() if k.startswith("model.")},
            }
            train = {**spec.train, **{k: v for k, v in point.items() if k in train_keys}}
            if spec.threads is not None:
                train["threads"] = spec.threads
            for target in spec.params or [None]:
                # Validates the options and sizes the width to the target before anything runs.
                base = make_run_config(
                    task_name,
                    model_name,
                    task_options=task_opts,
                    model_options=model_opts,
                    preset=spec.preset,
                    device=spec.device,
                    params=target,
                    **train,
                )
                configs.extend(base.model_copy(update={"seed": seed}) for seed in spec.seed_list())
    return configs


def pending(configs: list[RunConfig], results: str | Path, rerun: bool = False) -> list[RunConfig]:
    """The configurations not yet stored with status ok."""
    if rerun:
        return list(configs)
    from seqbench.store import read_runs

    runs = read_runs(results)
    done = set(
        zip(
            runs.loc[runs["status"] == "ok", "config_hash"],
            runs.loc[runs["status"] == "ok", "seed"],
            strict=True,
        )
    )
    return [c for c in configs if (c.config_hash(), c.seed) not in done]


def run_config(config_json: str, results: str, run_id: str | None = None) -> dict[str, Any]:
    """Run one configuration and report its outcome; what executors call, here or on a Dask worker.

    Idempotent under a given run_id: a scheduler may execute a task again after the worker holding its
    result died, and the second execution must not store the run twice."""
    from seqbench.runner import run
    from seqbench.store import RUNS

    stored = Path(results) / RUNS / f"{run_id}.parquet"
    if run_id is not None and stored.exists():
        import pyarrow.parquet as pq

        row = pq.read_table(stored).to_pylist()[0]
        return {k: row[k] for k in ("status", "error", "run_id", "accuracy", "wall_time_s")}
    config = RunConfig.model_validate_json(config_json)
    if config.device in ("auto", "cuda") and _gpu_count():  # on a GPU cluster's worker: its own GPU
        config = config.model_copy(update={"device": _worker_gpu()})
    try:
        row = run(config, results, run_id=run_id)
    except SeqbenchError as exc:  # a configuration the task or model refuses: nothing was stored
        return {"status": "invalid", "error": str(exc), "run_id": None, "accuracy": None}
    return {k: row[k] for k in ("status", "error", "run_id", "accuracy", "wall_time_s")}


def _worker_gpu() -> str:
    """On a Dask worker of a local GPU cluster (one worker per GPU, named 0..n-1), that worker's GPU;
    anywhere else (the serial executor, an external cluster) plain "cuda"."""
    try:
        from distributed import get_worker

        return f"cuda:{int(get_worker().name) % _gpu_count()}"
    except (ImportError, ValueError, TypeError):
        return "cuda"


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def run_serial(
    configs: list[RunConfig], results: str, on_event: Event, fresh_process: bool = True
) -> Iterator[tuple[RunConfig, dict]]:
    """One run after another, each in a fresh process by default: a process that has run before keeps
    the memory its allocator freed, and the next run's CPU peak-memory reading would come out too low
    (measured: 14 MiB instead of 176 MiB for copy/lstm). Costs about two seconds per run to start."""
    for config in configs:
        on_event("start", config, {})
        if fresh_process:
            outcome = _in_fresh_process(run_config, config.model_dump_json(), results)
        else:
            outcome = run_config(config.model_dump_json(), results)
        on_event("done", config, outcome)
        yield config, outcome


def _in_fresh_process(fn: Callable[..., dict], *args: Any) -> dict:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool as exc:  # killed (out of memory, a signal): nothing was stored
            return {
                "status": "error",
                "error": f"the run's process died: {exc}",
                "run_id": None,
                "accuracy": None,
            }


def run_dask(
    configs: list[RunConfig],
    results: str,
    on_event: Event,
    jobs: int | None,
    scheduler: str | None,
    setup: Callable[[], None] | None = None,
) -> Iterator[tuple[RunConfig, dict]]:
    """Submit every configuration as a Dask task; yield outcomes as they finish. `setup` runs once on
    every worker before any run (tests use it to register fake providers there)."""
    import dask
    from distributed import Client, LocalCluster, as_completed

    from seqbench.runner import failed_row
    from seqbench.store import new_run_id, write_run

    cluster = None
    # allowed-failures 0: a run whose worker dies is not retried (it is stored as an error instead);
    # worker-saturation 1.0: a worker holds only the run it executes, so a death takes no queued run along.
    settings = {
        "distributed.scheduler.allowed-failures": 0,
        "distributed.scheduler.worker-saturation": 1.0,
        "distributed.worker.daemon": False,
    }
    # GPU runs (cuda, or auto on a machine with GPUs) get one worker per GPU, each run one GPU.
    gpus = _gpu_count() if scheduler is None and any(c.device in ("auto", "cuda") for c in configs) else 0
    with dask.config.set(settings):
        if scheduler is None:
            n = gpus or jobs or 2
            cluster = LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
                resources={"GPU": 1} if gpus else None,
            )
        client = Client(cluster if cluster is not None else scheduler)
    try:
        if setup is not None:  # a worker plugin: also runs on workers restarted after a crash
            from distributed.diagnostics.plugin import WorkerPlugin

            class SetupPlugin(WorkerPlugin):
                def setup(self, worker: Any) -> None:
                    setup()

            client.register_plugin(SetupPlugin(), name="seqbench-setup")
        resources = {"GPU": 1} if gpus else None
        futures: dict[Any, tuple[RunConfig, str, int]] = {}

        def submit(config: RunConfig, run_id: str, attempt: int) -> Any:
            fut = client.submit(
                run_config,
                config.model_dump_json(),
                results,
                run_id,
                pure=False,
                key=f"seqbench-run-{run_id}-{attempt}",
                resources=resources,
            )
            futures[fut] = (config, run_id, attempt)
            return fut

        for config in configs:
            submit(config, new_run_id(), 1)  # the run_id is fixed per run: a re-execution finds its row
            on_event("start", config, {})
        completed = as_completed(list(futures))
        for fut in completed:
            config, run_id, attempt = futures.pop(fut)
            try:
                outcome = fut.result()
            except Exception as exc:  # the worker died (KilledWorker) or the task could not run at all
                if attempt < 2:  # a run that merely shared a dying worker gets one more try
                    completed.add(submit(config, run_id, attempt + 1))
                    fut.release()
                    continue
                row = failed_row(config, f"{type(exc).__name__}: {exc}")
                row["run_id"] = run_id
                write_run(results, row)
                outcome = {"status": "error", "error": row["error"], "run_id": run_id, "accuracy": None}
            fut.release()  # let the scheduler forget the result: a later worker death cannot resurrect it
            on_event("done", config, outcome)
            yield config, outcome
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def summarise(outcomes: list[dict[str, Any]]) -> dict[str, int]:
    statuses = [o["status"] for o in outcomes]
    return {"runs": len(statuses), "ok": statuses.count("ok"), "failed": sum(s != "ok" for s in statuses)}


def describe(config: RunConfig, grid: list[str] | tuple[str, ...] = ()) -> str:
    """One line naming a run: task/model, size, seed, its options and the training settings in `grid`
    (the sweep's grid keys), so that the grid points of one task and model tell apart: "lr=0.003"."""
    train = " ".join(f"{k}={getattr(config.train, k)}" for k in grid if k in TrainConfig.model_fields)
    extras = (
        json.dumps({**config.task_options, **config.model_options}, sort_keys=True)
        if (config.task_options or config.model_options)
        else ""
    )
    size = f" params~{config.params_target}" if config.params_target else ""
    return f"{config.task}/{config.model}{size} {train + ' ' if train else ''}seed {config.seed} {extras}".strip()
