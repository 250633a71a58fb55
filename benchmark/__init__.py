"""seqbench: synthetic memory tasks for sequence models.

    import seqbench
    task = seqbench.load_task("copy", max_length=20)
    core = seqbench.load_model("ntm", input_size=task.input_size, hidden_size=100)
    row = seqbench.run(seqbench.make_run_config("copy", "transformer", params=80_000), "results")

Importing seqbench is cheap: torch and the registered classes load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "load_task", "make_run_config", "run"]


def load_task(name: str, **options: Any) -> Any:
    """A registered task, built from validated options (`seqbench ls tasks` lists the names)."""
    from seqbench.network import load_task as _load

    return _load(name, **options)


def load_model(name: str, input_size: int, hidden_size: int, **options: Any) -> Any:
    """A registered model: an nn.Module mapping (batch, time, input_size) to (batch, time, hidden_size)."""
    from seqbench.network import load_model as _load

    return _load(name, input_size, hidden_size, **options)


def make_run_config(task: str, model: str, **kwargs: Any) -> Any:
    """A validated RunConfig (see `seqbench.config.make_run_config`): presets merged, options checked,
    `params=N` sizes the width to about N parameters, other keywords override training settings."""
    from seqbench.config import make_run_config as _make

    return _make(task, model, **kwargs)


def run(config: Any, results_dir: str = "results", **kwargs: Any) -> dict[str, Any]:
    """Train and evaluate one configuration, store its row under `results_dir` and return it."""
    from seqbench.runner import run as _run

    return _run(config, results_dir, **kwargs)
