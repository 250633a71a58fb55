"""Validated run configuration and presets.

A run is (task, task options, model, model options, training settings, seed). Presets fill the training
settings; anything given explicitly (CLI flag or keyword) wins. Precedence, lowest first:

    runner defaults  <  preset  <  task's preset hints  <  model's preset hints  <  explicit settings

so a task can say how long it needs (`Copy.presets`) and a model how it likes to be trained (`NTM.presets`
for the paper's RMSProp), and the user has the last word.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from seqbench.errors import OptionsError

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


#: Training settings added after configurations were first stored, with their defaults: a setting at its
#: default is left out of config_hash, so that stored runs keep their hash and sweeps still skip them.
ADDED_LATER: dict[str, Any] = {"compile": False}


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

    def config_hash(self) -> str:
        """What makes two runs the same experiment: everything but the seed and where it ran.

        A sweep skips a (config_hash, seed) already stored, so this must not change for cosmetic reasons."""
        payload = self.model_dump(exclude={"seed", "device"})
        payload["train"].pop("threads", None)
        for key, default in ADDED_LATER.items():
            if payload["train"].get(key) == default:
                payload["train"].pop(key)
        blob = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
    **train: Any,
) -> RunConfig:
    """A validated run configuration: presets merged, options checked, and with `params` the hidden width
    chosen so that the whole network's parameter count is as close as possible to it (recorded as the row's
    `target_params` beside the actual `params`). `train` overrides training settings (steps, lr, ...)."""
    from seqbench.network import check_model_signature, hidden_for_params, load_task
    from seqbench.options import validate_options
    from seqbench.registry import MODELS, TASKS

    task_options, model_options = dict(task_options or {}), dict(model_options or {})
    task_cls, model_cls = TASKS.get(task), MODELS.get(model)
    validate_options(task_cls, task_options, f"task {task!r}")
    check_model_signature(model_cls)
    validate_options(model_cls, model_options, f"model {model!r}")
    train = {k: v for k, v in train.items() if v is not None}
    if params is not None:
        if train.get("hidden_size") is not None:
            raise OptionsError("Give either a hidden size or a parameter target (--params), not both.")
        train["hidden_size"] = hidden_for_params(
            load_task(task, **task_options), model, params, model_options
        )
    return RunConfig(
        task=task,
        model=model,
        task_options=task_options,
        model_options=model_options,
        seed=seed,
        preset=preset,
        device=device,
        train=build_train_config(preset, task_cls, model_cls, train),
        params_target=params,
    )
