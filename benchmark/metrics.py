"""Moved: peak memory to `seqbench.memory`, provenance (git sha, device name, the kernels note) to
`seqbench.provenance`. These names stay importable from here for code written against the old module."""

from __future__ import annotations

from seqbench.memory import PeakMemory
from seqbench.provenance import (
    device_name,
    git_sha,
    kernels,
    note_kernel,
    note_one_off,
    one_off_seconds,
    reset_kernels,
)

__all__ = [
    "PeakMemory",
    "device_name",
    "git_sha",
    "kernels",
    "note_kernel",
    "note_one_off",
    "one_off_seconds",
    "reset_kernels",
]
