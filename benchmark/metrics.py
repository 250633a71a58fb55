"""Measurement helpers: peak memory of a run, provenance of a result row."""

from __future__ import annotations

import functools
import platform
import resource
import subprocess
import sys
from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _proc_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory of the work between `start()` and `stop()`.

    CUDA: `torch.cuda.max_memory_allocated` after resetting the peak (memory_kind "cuda").
    CPU: growth of the process's peak resident set over its resident set at `start()` (memory_kind "cpu").
    On Linux the kernel's high-water mark (VmHWM) is reset at start by writing 5 to /proc/self/clear_refs,
    so an earlier, larger peak in the same process does not hide this run's; elsewhere ru_maxrss is used,
    which can only report growth beyond the process's earlier peak.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "cuda" if device.type == "cuda" else "cpu"
        self._base = 0
        self._hwm_reset = False

    def start(self) -> None:
        if self.kind == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            _CLEAR_REFS.write_text("5")
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        rss = _proc_kib("VmRSS")
        self._base = (rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

    def stop(self) -> int:
        if self.kind == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        hwm = _proc_kib("VmHWM") if self._hwm_reset else None
        peak = (hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
        return max(0, peak - self._base)


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
    """Called by a model when its loop runs: `kernels()` then names it in the result row."""
    _kernels[name] = implementation


def reset_kernels() -> None:
    _kernels.clear()


def kernels() -> str:
    """The loop implementations noted since the last reset, "name=implementation, ..." ("" for none)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(_kernels.items()))


def environment() -> dict[str, str]:
    return {
        "torch_version": torch.__version__,
        "python_version": sys.version.split()[0],
        "platform": platform.platform(),
        "kernels": kernels(),
    }


# Seconds spent on one-off work inside training steps that is no part of training (building the C++ loops
# on first use): the runner leaves it out of train_time_s (it stays in wall_time_s).
_one_off = {"seconds": 0.0}


def note_one_off(seconds: float) -> None:
    """Called by code that does one-off work on first use (cpp_loops.load) with the time it took."""
    _one_off["seconds"] += seconds


def one_off_seconds() -> float:
    """One-off seconds noted in this process so far (the runner takes differences around each step)."""
    return _one_off["seconds"]
