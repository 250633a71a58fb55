"""Process lifetime: a sweep's helper processes die with it, and SIGTERM interrupts like Ctrl-C.

    sweep (CLI)  --spawn-->  run process (serial executor, one per run)
    sweep (CLI)  --spawn-->  Dask worker (local cluster)  --spawn-->  run process (one per run)

Every process seqbench starts calls `die_with_parent` first: on Linux the kernel then signals it when its
parent dies (`prctl(PR_SET_PDEATHSIG)`), even when the parent was killed with SIGKILL and ran no clean-up.
Before, a `kill -9` of a sweep left its run process (~420 MB) writing into the results directory and then
blocking forever on the pipe to its dead parent. A run process gets SIGTERM, which `interrupt_on_sigterm`
turns into KeyboardInterrupt: the run stores what it has with status `interrupted`, then exits. A Dask worker
gets SIGKILL (its runs execute in threads that a signal handler cannot interrupt; its run process, dying
with it, stores the row).

`preload`: Dask imports this module in each worker it starts and calls `dask_setup`, so the workers of a
local cluster die with the sweep too.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies. False where unsupported (not
    Linux). If the parent is already gone (it died before this call), act on it now."""
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent == 1 or os.getppid() != parent:  # orphaned between fork and prctl
        os.kill(os.getpid(), sig)
    return True


def interrupt_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt once (the runner stores the run as `interrupted`); further SIGTERMs
    while it stores are ignored, so a second signal cannot cut the row's write short. Main thread only."""

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def run_process_init(setup: Any = None) -> None:
    """Initializer of every run process: dies (as an interruption) with the process that started it, then
    runs `setup` if given (tests register fake providers with it)."""
    interrupt_on_sigterm()
    die_with_parent(signal.SIGTERM)
    if setup is not None:
        setup()


def dask_setup(worker: Any) -> None:
    """Dask preload hook, run in each worker process of a local cluster."""
    die_with_parent(signal.SIGKILL)


def stop_processes(processes: list[Any], grace_s: float = 15.0) -> None:
    """SIGTERM each (multiprocessing) process: a run stores itself as interrupted. Wait up to `grace_s`
    for them all, then SIGKILL any still there. For the run processes of an interrupted sweep."""
    import time

    processes = [proc for proc in processes if proc.pid is not None]  # started ones
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join(5)
