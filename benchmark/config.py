"""Validated run configuration and presets.

A run is (task, task options, model, model options, training settings, seed). Presets fill the training
settings; anything given explicitly (CLI flag or keyword) wins. Precedence, lowest first:

    runner defaults  <  preset  <  task's preset hints  <  model's preset hints  <  explicit settings

so a task can say how long it needs (`Copy.presets`) and a model how it likes to be trained (`NTM.presets`
for the paper's RMSProp), and the user has the last word.

Options are resolved once, here (`resolve_run_config`, which `make_run_config` and the runner call): the
stored `task_options` / `model_options` are complete (defaults filled in), coerced and checked against the
constructors' signatures, and the configuration is built once on the meta device so that a value the
constructor refuses (`num_layers=0`) is an OptionsError (exit 2, nothing stored) before anything runs.
This is the one place for such checks: a model or task raises OptionsError from its constructor, or puts a
constraint in its signature (`Annotated[int, Field(ge=1)]`).

`config_hash` (see `hash_payload`) names one experiment however it was spelled: `10`, `"10"`, `10.0` and
"left at the default" give one hash. The rules, which keep every stored hash valid as the code grows:

- options enter the hash in their canonical form, only where they differ from the constructor's default
  (an option added later whose default reproduces the old behaviour changes no stored hash);
- a task's or model's `version` (class attribute, 1 when absent) enters it when it is not 1: bump it when
  what the class generates or computes changes, and the new rows never group with the old ones;
- a setting added to `RunConfig` or `TrainConfig` after configurations were stored is listed in
  `ADDED_LATER` with its default, and is left out of the hash at that default;
- the seed, the device and the thread count are not part of the experiment.

Rows stored before options were resolved hold the options as they were given; `legacy_config_hash`
recomputes their hash under these rules when they are read (`store.read_runs`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from seqbench.errors import OptionsError
from seqbench.options import resolve_options

PRESETS: dict[str, dict[str, Any]] = {
    # Seconds: for tests and for checking that a new model or task runs at all.
    "smoke": {"steps": 20, "batch_size": 8, "eval_every": 10, "eval_size": 16, "hidden_size": 16},
    # Minutes on a laptop CPU: the default.
    "quick": {"steps": 2000, "batch_size": 32, "eval_every": 100, "eval_size": 128, "hidden_size": 128},
    # The papers' settings, where a task or model says what they were; long.
    "paper": {"steps": 100_000, "batch_size": 1, "eval_every": 1000, "eval_size": 256, "hidden_size": 128},
}


class TrainConfig(BaseModel):
    """How a run trains. Defaults are the runner's; presets and the user override them."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(2000, ge=1, description="optimiser steps (upper bound: a solved run stops early)")
    batch_size: int = Field(32, ge=1)
    hidden_size: int = Field(128, ge=1)
    optimizer: Literal["adam", "rmsprop", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.0, ge=0)  # RMSProp/SGD momentum; the NTM paper uses 0.9
    clip: Literal["norm", "value", "none"] = "norm"  # norm: L2 of all gradients; value: element-wise
    clip_value: float = Field(1.0, gt=0)
    eval_every: int = Field(100, ge=1)
    eval_size: int = Field(128, ge=1, description="sequences per evaluation length")
    solve_threshold: float = Field(
        0.99, gt=0, le=1, description="accuracy at the training length that stops a run"
    )
    warmup_steps: int = Field(5, ge=0, description="steps left out of the tokens/s figure")
    threads: int | None = Field(None, ge=1, description="torch CPU threads; None keeps torch's default")
    # Added after the first release: left out of config_hash at their defaults (see ADDED_LATER).
    compile: bool = Field(False, description="torch.compile the model (opt-in: slower on the CPU here)")
    trainer: str = Field("bptt", description="bptt, tbptt, rtrl or uoro (seqbench.trainers)")
    trainer_options: dict[str, Any] = Field(
        default_factory=dict, description="the trainer's options, complete (defaults filled in)"
    )
    stream: int = Field(0, ge=0, description="episodes per chunk of an unending stream; 0: episodes")
    monitor: Literal["test", "validation"] = Field(
        "test",
        description="the set the evaluations during training read (curve, solve, early stop); validation: "
        "its own seed, so that the test set decides nothing",
    )

    @pydantic.model_validator(mode="after")
    def _complete_trainer_options(self) -> TrainConfig:
        from seqbench.trainers import validate_trainer_options

        self.trainer_options = validate_trainer_options(self.trainer, self.trainer_options)
        return self


#: Settings added after configurations were first stored, with their defaults, by their place in
#: `RunConfig.model_dump()` ("train.compile"; a top-level field by its name): a setting at its default is
#: left out of config_hash, so that stored runs keep their hash and sweeps still skip them.
ADDED_LATER: dict[str, Any] = {
    "train.compile": False,
    "train.trainer": "bptt",
    "train.trainer_options": {},
    "train.stream": 0,
    "train.monitor": "test",
    "state_target": None,
}

#: Not part of the experiment: where and how fast it ran, and which seed.
NOT_HASHED = ("seed", "device", "train.threads")


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: str
    model: str
    task_options: dict[str, Any] = Field(default_factory=dict)
    model_options: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(0, ge=0)
    preset: Literal["smoke", "quick", "paper"] = "quick"
    device: str = "auto"
    train: TrainConfig = Field(default_factory=TrainConfig)
    params_target: int | None = Field(None, ge=1, description="parameter count the width was sized to")
    # Added later (ADDED_LATER): None leaves every stored hash as it was.
    state_target: int | None = Field(
        None,
        ge=1,
        description="floats of state per sequence the width was sized to (network.hidden_for_state)",
    )

    def make_task(self) -> Any:
        """The task this configuration trains on (its options as resolved, not checked again); with
        `train.stream` its episodes back to back (seqbench.streaming)."""
        from seqbench.registry import TASKS

        task = TASKS.get(self.task)(**self.task_options)
        if self.train.stream:
            from seqbench.streaming import StreamingTask

            task = StreamingTask(task, self.train.stream)
        return task

    def options_changed(self) -> dict[str, Any]:
        """The task's and the model's options that differ from their defaults, in one mapping."""
        from seqbench.options import non_default
        from seqbench.registry import MODELS, TASKS

        return {
            **non_default(TASKS.get(self.task), self.task_options),
            **non_default(MODELS.get(self.model), self.model_options),
        }

    def config_hash(self) -> str:
        """What makes two runs the same experiment: everything but the seed and where it ran (see the
        module's docstring for the rules). A sweep skips a (config_hash, seed) already stored, so this must
        not change for cosmetic reasons."""
        from seqbench.registry import MODELS, TASKS

        return hash_payload(self.model_dump(), TASKS.get(self.task), MODELS.get(self.model))


def version_of(cls: type) -> int:
    """A task's or model's definition version: 1 unless the class says otherwise."""
    return int(getattr(cls, "version", 1))


def hash_payload(
    config: dict[str, Any], task_cls: type, model_cls: type, versions: tuple[int, int] | None = None
) -> str:
    """config_hash of a dumped RunConfig, under the rules in this module's docstring. `versions` (task,
    model) default to the classes' own."""
    from seqbench.options import canonical_json, non_default

    task_version, model_version = versions or (version_of(task_cls), version_of(model_cls))
    payload = copy.deepcopy(config)
    for key in NOT_HASHED:
        _pop(payload, key)
    for key, default in ADDED_LATER.items():
        if _get(payload, key) == default:
            _pop(payload, key)
    payload["task_options"] = non_default(task_cls, payload["task_options"])
    payload["model_options"] = non_default(model_cls, payload["model_options"])
    for field, version in (("task_version", task_version), ("model_version", model_version)):
        if version != 1:
            payload[field] = version
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]


def _get(payload: dict[str, Any], dotted: str) -> Any:
    *parents, leaf = dotted.split(".")
    for key in parents:
        payload = payload.get(key, {})
    return payload.get(leaf, _MISSING)


def _pop(payload: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        payload = payload.get(key, {})
    payload.pop(leaf, None)


_MISSING = object()


def build_train_config(
    preset: str,
    task_cls: type | None = None,
    model_cls: type | None = None,
    overrides: dict[str, Any] | None = None,
) -> TrainConfig:
    """Merge defaults, preset, the task's and the model's preset hints, and explicit overrides."""
    if preset not in PRESETS:
        raise OptionsError(f"Unknown preset {preset!r}. Available: {', '.join(PRESETS)}.")
    merged: dict[str, Any] = dict(PRESETS[preset])
    for cls in (task_cls, model_cls):
        merged.update(getattr(cls, "presets", {}).get(preset, {}))
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return TrainConfig(**merged)
    except pydantic.ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise OptionsError(f"Invalid training settings: {problems}.") from None


def make_run_config(
    task: str,
    model: str,
    *,
    task_options: dict[str, Any] | None = None,
    model_options: dict[str, Any] | None = None,
    seed: int = 0,
    preset: str = "quick",
    device: str = "auto",
    params: int | None = None,
    state: int | None = None,
    **train: Any,
) -> RunConfig:
    """A validated run configuration: presets merged, options resolved (complete, coerced, checked), and
    with `params` the hidden width chosen so that the whole network's parameter count is as close as
    possible to it (recorded as the row's `target_params` beside the actual `params`); with `state`, so
    that the floats the model carries per sequence at the training length are (`network.hidden_for_state`;
    recorded as `target_state` beside the actual `state_size`). At most one of `params`, `state` and
    `hidden_size`. `train` overrides training settings (steps, lr, ...)."""
    from seqbench.network import check_model_signature, hidden_for_params, hidden_for_state
    from seqbench.registry import MODELS, TASKS

    task_cls, model_cls = TASKS.get(task), MODELS.get(model)
    task_options = resolve_options(task_cls, dict(task_options or {}), f"task {task!r}")
    check_model_signature(model_cls)
    model_options = resolve_options(model_cls, dict(model_options or {}), f"model {model!r}")
    train = {k: v for k, v in train.items() if v is not None}
    if params is not None and state is not None:
        raise OptionsError("Give either a parameter target (--params) or a state target (--state), not both.")
    if params is not None:
        if train.get("hidden_size") is not None:
            raise OptionsError("Give either a hidden size or a parameter target (--params), not both.")
        train["hidden_size"] = hidden_for_params(task_cls(**task_options), model, params, model_options)
    if state is not None:
        if train.get("hidden_size") is not None:
            raise OptionsError("Give either a hidden size or a state target (--state), not both.")
        if state < 1:
            raise OptionsError(f"A state target must be positive, got {state}.")
        train["hidden_size"] = hidden_for_state(task_cls(**task_options), model, state, model_options)
    train_config = build_train_config(preset, task_cls, model_cls, train)
    try:
        config = RunConfig(
            task=task,
            model=model,
            task_options=task_options,
            model_options=model_options,
            seed=seed,
            preset=preset,
            device=device,
            train=train_config,
            params_target=params,
            state_target=state,
        )
    except pydantic.ValidationError as exc:  # --seed -1, an unknown preset: one line, what is valid
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise OptionsError(f"Invalid run settings: {problems}.") from None
    check_buildable(config)
    return config


def resolve_run_config(config: RunConfig) -> RunConfig:
    """`config` with its options resolved and checked (what `make_run_config` returns already; the runner
    calls this for a RunConfig built by hand or read back from JSON). Idempotent."""
    from seqbench.registry import MODELS, TASKS

    task_cls, model_cls = TASKS.get(config.task), MODELS.get(config.model)
    resolved = config.model_copy(
        update={
            "task_options": resolve_options(task_cls, config.task_options, f"task {config.task!r}"),
            "model_options": resolve_options(model_cls, config.model_options, f"model {config.model!r}"),
        }
    )
    check_buildable(resolved)
    return resolved


def check_buildable(config: RunConfig) -> None:
    """Build the task and, on the meta device (nothing allocated), the network: a value the constructors
    refuse becomes an OptionsError now, not a stored error row later. A model whose construction needs real
    tensors (an op without a meta kernel) is left to the run."""
    import torch

    from seqbench.models import cpp_loops
    from seqbench.network import build_network

    cpp_loops.choice()  # SEQBENCH_LSTM_KERNEL=bogus: an OptionsError now, not an error row later
    check_device(config.device)
    try:
        task = config.make_task()
        with torch.device("meta"):
            net = build_network(task, config.model, config.train.hidden_size, config.model_options)
    except OptionsError:
        raise
    except ValueError as exc:  # a constructor refusing a value it was given
        raise OptionsError(
            f"{config.task}/{config.model} cannot be built with these options: {exc}"
        ) from None
    except (RuntimeError, NotImplementedError):
        return
    check_trainer(config, net)


def check_trainer(config: RunConfig, net: Any) -> None:
    """The trainer's configuration errors (OptionsError, exit 2), before anything is stored: its options,
    the stateful protocol it or a stream needs (seqbench.stateful), RTRL's cost at this width."""
    from seqbench.trainers import make_trainer

    cfg = config.train
    if cfg.trainer == "bptt" and not cfg.stream:
        return  # every model can: the plain contract
    trainer = make_trainer(cfg.trainer, cfg.trainer_options)
    trainer.check(net, cfg.batch_size, config.model, cfg.hidden_size, stream=bool(cfg.stream))


def check_device(name: str) -> None:
    """`auto`, `cpu`, `cuda` or `cuda:N` (or another device torch knows, such as `mps`); `gpu` is not one."""
    import torch

    if name == "auto":
        return
    try:
        torch.device(name)
    except (RuntimeError, ValueError):
        raise OptionsError(
            f"Unknown device {name!r}: use auto, cpu, cuda or cuda:N (auto takes a GPU where torch sees one)."
        ) from None


def legacy_config_hash(row: dict[str, Any]) -> str:
    """The config_hash of a row stored before options were resolved (its options as given, no version
    columns: every class then was version 1), recomputed under today's rules from the row's own columns."""
    from seqbench.registry import MODELS, TASKS

    task_cls, model_cls = TASKS.get(row["task"]), MODELS.get(row["model"])
    target = row.get("target_params")
    dumped = {
        "task": row["task"],
        "model": row["model"],
        "task_options": resolve_options(task_cls, json.loads(row["task_options"] or "{}"), row["task"]),
        "model_options": resolve_options(model_cls, json.loads(row["model_options"] or "{}"), row["model"]),
        "preset": row["preset"],
        "train": TrainConfig(**json.loads(row["train_config"])).model_dump(),
        "params_target": None if target is None or target != target else int(target),
    }
    return hash_payload(dumped, task_cls, model_cls, versions=(1, 1))
