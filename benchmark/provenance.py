"""Where and with what a row was produced: one `provenance()` for runs, bench rows and probes (the
columns are declared in `seqbench.columns.PROVENANCE`), and the note of which loop implementations ran."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import seqbench


def provenance(device: torch.device) -> dict[str, Any]:
    """The provenance columns of a row made now on `device` (the kernels noted since `reset_kernels`)."""
    return {
        "created_at": datetime.now(timezone.utc),
        "seqbench_version": seqbench.__version__,
        "git_sha": git_sha(),
        "device": device.type,
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        "platform": platform.platform(),
        "kernels": kernels(),
        "threads": torch.get_num_threads(),
    }


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    """The commit of the seqbench checkout that ran, with `-dirty` for uncommitted changes.

    "unknown" unless the code runs from (or was installed into a virtual environment inside) a seqbench
    checkout: git would otherwise happily report whatever unrelated repository encloses site-packages."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout

    try:
        top = Path(git("rev-parse", "--show-toplevel").strip())
        pyproject = top / "pyproject.toml"
        if (
            not (top / "benchmark" / "runner.py").is_file()
            or 'name = "seqbench"' not in pyproject.read_text()
        ):
            return "unknown"
        sha = git("rev-parse", "HEAD").strip()
        dirty = git("status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if dirty else "")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:  # platform.processor() is empty on most Linux systems
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


# Which implementation of a model's inner loop ran, where a model has more than one that compute the same
# equations (e.g. the shared LSTM cell: C++ loops or the Python ones, which agree to float precision).
_kernels: dict[str, str] = {}


def note_kernel(name: str, implementation: str) -> None:
    """Called by a model when its loop runs: `kernels()` then names it in the row."""
    _kernels[name] = implementation


def reset_kernels() -> None:
    _kernels.clear()


def kernels() -> str:
    """The loop implementations noted since the last reset, "name=implementation, ..." ("" for none)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(_kernels.items()))


# Seconds spent on one-off work inside training steps that is no part of training (building the C++ loops
# on first use): the runner leaves it out of train_time_s (it stays in wall_time_s).
_one_off = {"seconds": 0.0}


def note_one_off(seconds: float) -> None:
    """Called by code that does one-off work on first use (cpp_loops.load) with the time it took."""
    _one_off["seconds"] += seconds


def one_off_seconds() -> float:
    """One-off seconds noted in this process so far (the runner takes differences around each step)."""
    return _one_off["seconds"]
