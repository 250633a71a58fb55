"""Sweeps: tasks x models x grid x sizes x seeds, one after another or as Dask tasks. The sizes are the
parameter targets (`params`) and then the state targets (`states`): a sweep with both runs each model at
every one of them, once per target (the two views side by side, never one run sized to both).

    seqbench sweep --task copy --task adding --model lstm --model gru --seeds 3
    seqbench sweep --config sweep.yaml --executor dask --jobs 2

Where the runs execute is an executor (`seqbench.executors`: serial, dask), all behind one signature. A
sweep first drops what is already stored with status ok (by config_hash and seed), so an interrupted sweep
resumes where it stopped; `rerun=True` runs everything again. A run that fails is stored with its status
and the sweep goes on. An executor's per-run defaults (one torch thread per run on Dask) are applied here,
when the sweep expands, so the Python API gets them as the CLI does.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator

from seqbench.config import RunConfig, TrainConfig, make_run_config
from seqbench.errors import OptionsError
from seqbench.executors import EXECUTORS, Executor, Outcome, get_executor
from seqbench.registry import TASKS

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


class SweepSpec(BaseModel):
    """What to run. Grid keys: a training setting (`lr`), or `task.KEY` / `model.KEY` for an option."""

    model_config = ConfigDict(extra="forbid")

    tasks: list[str] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    seeds: int | list[int] = 1  # N means seeds 0..N-1
    preset: Literal["smoke", "quick", "paper"] = "quick"
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    params: list[int] = Field(default_factory=list)  # parameter-count targets; empty: the preset's width
    states: list[int] = Field(default_factory=list)  # state-size targets (floats per sequence), beside params
    task_options: dict[str, Any] = Field(default_factory=dict)
    model_options: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)  # fixed training settings (steps, lr, ...)
    device: str = "auto"
    executor: str = "serial"  # a name in seqbench.executors.EXECUTORS
    jobs: int | None = Field(None, ge=1)
    scheduler: str | None = None
    threads: int | None = Field(None, ge=1)  # torch threads per run; Dask workers default to 1
    rerun: bool = False
    same_process: bool = False  # serial: run in this process (no fresh process per run)
    results: str = "results"

    @field_validator("executor")
    @classmethod
    def _known_executor(cls, name: str) -> str:
        if name not in EXECUTORS:
            raise ValueError(f"unknown executor {name!r}; available: {', '.join(EXECUTORS)}")
        return name

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """A sweep file, YAML or TOML, with the same keys as SweepSpec."""
    path = Path(path)
    text = path.read_text()
    if path.suffix in (".toml",):
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise OptionsError(f"{path}: not valid TOML: {exc}.") from None
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            at = f" (line {where.line + 1}, column {where.column + 1})" if where is not None else ""
            what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise OptionsError(f"{path}: not valid YAML{at}: {what}.") from None
        if not isinstance(data, dict):
            raise OptionsError(
                f"{path}: a sweep file holds a mapping of settings, got {type(data).__name__}."
            )
        return data
    raise OptionsError(f"{path}: sweep files are .yaml, .yml or .toml.")


def validation_problems(exc: pydantic.ValidationError) -> str:
    """A settings file's validation errors in one line: "seeds: ...; lrs: unknown setting"."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc']))}: {'unknown setting' if e['type'] == 'extra_forbidden' else e['msg']}"
        for e in exc.errors()
    )


def make_spec(values: dict[str, Any]) -> SweepSpec:
    try:
        return SweepSpec(**values)
    except pydantic.ValidationError as exc:
        raise OptionsError(f"Invalid sweep: {validation_problems(exc)}.") from None


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
    # A task name with a wildcard is a group: `chomsky/*` is the whole Chomsky-hierarchy suite.
    tasks = [n for t in spec.tasks for n in (TASKS.names(t) if any(c in t for c in "*?[") else [t])]
    if not tasks:
        raise OptionsError(f"No task matches {spec.tasks}; see `seqbench ls tasks`.")
    for task_name, model_name in itertools.product(tasks, spec.models):
        for values in itertools.product(*(spec.grid[k] for k in keys)):
            point = dict(zip(keys, values, strict=True))
            task_opts = {**spec.task_options, **{k[5:]: v for k, v in point.items() if k.startswith("task.")}}
            model_opts = {
                **spec.model_options,
                **{k[6:]: v for k, v in point.items() if k.startswith("model.")},
            }
            train = {**spec.train, **{k: v for k, v in point.items() if k in train_keys}}
            threads = spec.threads if spec.threads is not None else EXECUTORS[spec.executor].run_threads
            if threads is not None:
                train["threads"] = threads
            sizes = [{"params": p} for p in spec.params] + [{"state": s} for s in spec.states]
            for size in sizes or [{}]:
                # Validates the options and sizes the width to the target before anything runs.
                base = make_run_config(
                    task_name,
                    model_name,
                    task_options=task_opts,
                    model_options=model_opts,
                    preset=spec.preset,
                    device=spec.device,
                    **size,
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


def summarise(outcomes: list[Outcome]) -> dict[str, int]:
    ok = sum(o.ok for o in outcomes)
    return {"runs": len(outcomes), "ok": ok, "failed": len(outcomes) - ok}


def executor_for(spec: SweepSpec, setup: Callable[[], None] | None = None) -> Executor:
    """The spec's executor, built from its settings."""
    return get_executor(spec.executor)(
        jobs=spec.jobs, scheduler=spec.scheduler, same_process=spec.same_process, setup=setup
    )


def describe(config: RunConfig, grid: list[str] | tuple[str, ...] = ()) -> str:
    """One line naming a run: task/model, size, the training settings in `grid` (the sweep's grid keys, so
    that the grid points of one task and model tell apart: "lr=0.003"), seed and its non-default options."""
    train = " ".join(f"{k}={getattr(config.train, k)}" for k in grid if k in TrainConfig.model_fields)
    changed = config.options_changed()  # the stored options are complete: name what differs
    extras = json.dumps(changed, sort_keys=True) if changed else ""
    size = f" params~{config.params_target}" if config.params_target else ""
    size += f" state~{config.state_target}" if config.state_target else ""
    return f"{config.task}/{config.model}{size} {train + ' ' if train else ''}seed {config.seed} {extras}".strip()
