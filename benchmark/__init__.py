"""seqbench: synthetic memory tasks for sequence models.

    import seqbench
    task = seqbench.load_task("copy", max_length=20)
    core = seqbench.load_model("ntm", input_size=task.input_size, hidden_size=100)

Importing seqbench is cheap: torch and the registered classes load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "load_task"]


def load_task(name: str, **options: Any) -> Any:
    """A registered task, built from validated options (`seqbench ls tasks` lists the names)."""
    from seqbench.network import load_task as _load

    return _load(name, **options)


def load_model(name: str, input_size: int, hidden_size: int, **options: Any) -> Any:
    """A registered model: an nn.Module mapping (batch, time, input_size) to (batch, time, hidden_size)."""
    from seqbench.network import load_model as _load

    return _load(name, input_size, hidden_size, **options)
