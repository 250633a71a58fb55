"""Peak memory of a piece of work: on a GPU the allocator's peak, on the CPU the resident set's high-water
mark (the row's `memory_kind`: cuda | cpu)."""

from __future__ import annotations

import resource
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


def memory_kind(device: torch.device) -> str:
    return "cuda" if device.type == "cuda" else "cpu"


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
        self.kind = memory_kind(device)
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
