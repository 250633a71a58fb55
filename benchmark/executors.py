"""Executors: where a sweep's runs execute. One registry, one signature, one `Outcome` per run.

    EXECUTORS["serial"](...).run(configs, results, on_event)   # one after another, a fresh process each
    EXECUTORS["dask"](jobs=2).run(configs, results, on_event)  # Dask tasks on a local or remote cluster

Every executor is built from the same settings (`jobs`, `scheduler`, `same_process`, `setup`; each takes the
ones it needs and ignores the rest) and yields `(config, Outcome)` pairs as runs finish, calling
`on_event("start" | "done", config, outcome)` around each. An executor also declares its per-run defaults
(`run_threads`: torch threads per run unless the sweep says otherwise), which the sweep applies when it
expands its configurations, so the Python API gets them as the CLI does. Adding an executor is one class
here and one entry in `EXECUTORS`: the CLI's `--executor` choices and the sweep's validation come from it.

Both built-ins run each configuration through `run_config`, which is idempotent under a fixed run_id: a
scheduler may execute a task again after the worker holding its result died, and the second execution must
not store the run twice.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from seqbench.errors import OptionsError, SeqbenchError, suggest

if TYPE_CHECKING:  # importing the config (pydantic) here would slow `seqbench --help`, which lists executors
    from seqbench.config import RunConfig

#: `feed(n)`: at most n configurations to start now (each handed out once), [] when none can start yet.
Feed = Callable[[int], list["RunConfig"]]


@dataclass(frozen=True)
class Outcome:
    """What a sweep learns of one run. `status` is the row's (ok | diverged | oom | error | interrupted), or
    `invalid` for a configuration the task or model refused before anything was stored."""

    status: str
    run_id: str | None = None
    accuracy: float | None = None
    error: str | None = None
    wall_time_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> Outcome:
        return cls(
            status=row["status"],
            run_id=row.get("run_id"),
            accuracy=row.get("accuracy"),
            error=row.get("error"),
            wall_time_s=row.get("wall_time_s"),
        )


Event = Callable[
    [str, "RunConfig", "Outcome | None"], None
]  # ("start", config, None) | ("done", config, outcome)


def run_config(config_json: str, results: str, run_id: str | None = None) -> Outcome:
    """Run one configuration and report its outcome: what every executor calls, here or on a worker."""
    from seqbench.config import RunConfig
    from seqbench.runner import run
    from seqbench.store import RUNS

    stored = Path(results) / RUNS / f"{run_id}.parquet"
    if run_id is not None and stored.exists():  # a re-execution: the first one stored the row
        import pyarrow.parquet as pq

        return Outcome.of_row(pq.read_table(stored).to_pylist()[0])
    config = RunConfig.model_validate_json(config_json)
    if config.device in ("auto", "cuda") and gpu_count():  # on a GPU cluster's worker: its own GPU
        config = config.model_copy(update={"device": _worker_gpu()})
    try:
        row = run(config, results, run_id=run_id)
    except SeqbenchError as exc:  # a configuration the task or model refuses: nothing was stored
        return Outcome(status="invalid", error=str(exc))
    return Outcome.of_row(row)


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _worker_gpu() -> str:
    """On a Dask worker of a local GPU cluster (one worker per GPU, named 0..n-1), that worker's GPU;
    anywhere else (the serial executor, an external cluster) plain "cuda"."""
    try:
        from distributed import get_worker

        return f"cuda:{int(get_worker().name) % gpu_count()}"
    except (ImportError, ValueError, TypeError):
        return "cuda"


class Executor:
    """The shape every executor has. Subclasses set `name`, `help` and `run_threads`, and implement `run`."""

    name: ClassVar[str]
    help: ClassVar[str]
    run_threads: ClassVar[int | None] = None  # torch threads per run by default; None keeps torch's

    def __init__(
        self,
        jobs: int | None = None,
        scheduler: str | None = None,
        same_process: bool = False,
        setup: Callable[[], None] | None = None,
    ) -> None:
        self.jobs, self.scheduler, self.same_process, self.setup = jobs, scheduler, same_process, setup

    def describe(self) -> str:
        """How the sweep's first line names where it runs."""
        return self.name

    def run(
        self, configs: list[RunConfig], results: str, on_event: Event
    ) -> Iterator[tuple[RunConfig, Outcome]]:
        raise NotImplementedError

    def run_feed(self, feed: Feed, results: str, on_event: Event) -> Iterator[tuple[RunConfig, Outcome]]:
        """Run what `feed(n)` hands out (at most n configurations, each handed out once; [] once nothing more
        can start until a running one finishes) until it hands out nothing with nothing running: work whose
        next runs depend on the last ones' results (a study's climbs). Here in batches: everything the feed
        has, run with `run`, then ask again. An executor that runs several at once overrides it to ask
        whenever a slot frees (Dask), so that no worker waits for a batch's slowest run."""
        while batch := feed(sys.maxsize):
            yield from self.run(batch, results, on_event)


class Serial(Executor):
    """One run after another, each in a fresh process unless `same_process`: a process that has run before
    keeps the memory its allocator freed, and the next run's CPU peak-memory reading would come out too low
    (measured: 14 MiB instead of 176 MiB for copy/lstm). Costs about two seconds per run to start."""

    name = "serial"
    help = "one run after another on this machine, a fresh process each (the default)"

    def run(
        self, configs: list[RunConfig], results: str, on_event: Event
    ) -> Iterator[tuple[RunConfig, Outcome]]:
        for config in configs:
            on_event("start", config, None)
            if self.same_process:
                outcome = run_config(config.model_dump_json(), results)
            else:
                outcome = _in_fresh_process(config.model_dump_json(), results)
            on_event("done", config, outcome)
            yield config, outcome


def _in_fresh_process(
    config_json: str, results: str, run_id: str | None = None, setup: Callable[[], None] | None = None
) -> Outcome:
    """`run_config` in a fresh process (spawned: nothing inherited from this one's allocator, so its CPU
    peak memory is its own), which dies with this process however this one ends (seqbench.lifetime);
    interrupted here (Ctrl-C, SIGTERM), it is interrupted too, stores its run as `interrupted`, and is
    waited for before the interruption goes on. A run process that dies (killed, out of memory) is stored
    as an `error` row. `setup` (picklable) runs in the run process first.

    A plain process and a pipe, not a process pool: a pool's worker that outlives its parent waits forever
    for the next task on a pipe it holds both ends of; this process sends one outcome and exits."""
    import multiprocessing
    from multiprocessing.connection import wait

    from seqbench.lifetime import stop_processes

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_run_process, args=(send, setup, config_json, results, run_id), daemon=False)
    try:
        proc.start()
        send.close()  # the child's end: with it closed here, the child's death reads as end-of-file
        wait([receive, proc.sentinel])
        try:
            outcome = receive.recv()
        except EOFError:  # killed (out of memory, a signal) before it could answer: store that
            proc.join()
            return _store_death(
                config_json, results, run_id, f"the run's process died (exit code {proc.exitcode})"
            )
        proc.join()
        return outcome
    except BaseException:  # KeyboardInterrupt (Ctrl-C or SIGTERM): the run process must not outlive us
        stop_processes([proc])
        raise
    finally:
        receive.close()


def _run_process(send: Any, setup: Callable[[], None] | None, *args: Any) -> None:
    from seqbench.lifetime import run_process_init

    run_process_init(setup)
    try:
        outcome = run_config(*args)
    except KeyboardInterrupt:  # interrupted by its parent (or its parent's death): the runner stored it
        sys.exit(130)
    send.send(outcome)
    send.close()


def _store_death(config_json: str, results: str, run_id: str | None, error: str) -> Outcome:
    from seqbench.config import RunConfig
    from seqbench.runner import failed_row
    from seqbench.store import write_run

    row = failed_row(RunConfig.model_validate_json(config_json), error)
    if run_id is not None:
        row["run_id"] = run_id
    write_run(results, row)
    return Outcome.of_row(row)


class Dask(Executor):
    """Every configuration a Dask task, on a `LocalCluster` of `jobs` single-threaded worker processes or on
    an existing cluster at `scheduler` (one started by dask-jobqueue on SLURM, say). On a local cluster a
    worker that dies mid-run (killed, out of memory) fails only that run: the scheduler does not retry by
    itself (allowed-failures 0); the executor resubmits a run whose worker died once (it may only have
    shared the dying worker) and stores an `error` row if it dies again. An external scheduler keeps its
    own retry setting. `setup` runs once on every worker before any run (tests register fakes with it)."""

    name = "dask"
    help = "Dask tasks on a local cluster of --jobs workers, or on the cluster at --scheduler"
    run_threads = 1  # measured: two processes with torch's default threads on 2 cores ran 5-25x slower

    def describe(self) -> str:
        return f"dask, {self.scheduler}" if self.scheduler else f"dask, {self.jobs or 2} workers"

    def run(
        self, configs: list[RunConfig], results: str, on_event: Event
    ) -> Iterator[tuple[RunConfig, Outcome]]:
        """Every configuration submitted at once (the scheduler hands each worker one at a time)."""
        pending = list(configs)

        def everything(n: int) -> list[RunConfig]:
            taken = pending[:]
            pending.clear()
            return taken

        devices = {c.device for c in pending}
        yield from self._run(everything, results, on_event, slots=sys.maxsize, devices=devices)

    def run_feed(self, feed: Feed, results: str, on_event: Event) -> Iterator[tuple[RunConfig, Outcome]]:
        """One run per worker in flight: the feed is asked again each time a run finishes (after its row is
        stored), so a run that the finished one made possible starts at once on the free worker. The first
        configuration, asked for before the cluster starts, says whether it needs GPU workers."""
        held = feed(1)
        if not held:
            return

        def held_first(n: int) -> list[RunConfig]:
            out = held[:n]
            del held[:n]
            return out + (feed(n - len(out)) if n > len(out) else [])

        yield from self._run(held_first, results, on_event, slots=None, devices={held[0].device})

    def _run(
        self, feed: Feed, results: str, on_event: Event, slots: int | None, devices: set[str]
    ) -> Iterator[tuple[RunConfig, Outcome]]:
        try:
            import dask
            from distributed import Client, LocalCluster, as_completed
        except ImportError:
            raise OptionsError(
                'The dask executor needs Dask: pip install "seqbench[dask]" (or use --executor serial).'
            ) from None
        from seqbench.runner import failed_row
        from seqbench.store import new_run_id, write_run

        cluster = None
        # allowed-failures 0: a run whose worker dies is not retried (it is stored as an error instead);
        # worker-saturation 1.0: a worker holds only the run it executes, so a death takes no queued run along.
        settings = {
            "distributed.scheduler.allowed-failures": 0,
            "distributed.scheduler.worker-saturation": 1.0,
            "distributed.worker.daemon": False,
        }
        # GPU runs (cuda, or auto on a machine with GPUs) get one worker per GPU, each run one GPU.
        local = self.scheduler is None
        gpus = gpu_count() if local and devices & {"auto", "cuda"} else 0
        with dask.config.set(settings):
            if local:
                cluster = LocalCluster(
                    n_workers=gpus or self.jobs or 2,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                    resources={"GPU": 1} if gpus else None,
                    preload=["seqbench.lifetime"],  # workers die with the sweep, even after a kill -9
                )
            client = Client(cluster if cluster is not None else self.scheduler)
        try:
            if self.setup is not None:
                _register_setup(client, self.setup)
            resources = {"GPU": 1} if gpus else None
            futures: dict[Any, tuple[RunConfig, str, int]] = {}

            def submit(config: RunConfig, run_id: str, attempt: int) -> Any:
                # A fresh process per run (unless same_process): a worker that has run before would read
                # the next run's CPU peak memory too low, as in a serial sweep's single process.
                fresh = () if self.same_process else (self.setup,)
                fut = client.submit(
                    run_config if self.same_process else _in_fresh_process,
                    config.model_dump_json(),
                    results,
                    run_id,
                    *fresh,
                    pure=False,
                    key=f"seqbench-run-{run_id}-{attempt}",
                    resources=resources,
                )
                futures[fut] = (config, run_id, attempt)
                return fut

            if slots is None:  # one per worker: the local cluster's, or the remote cluster's threads now
                slots = (gpus or self.jobs or 2) if local else max(1, sum(client.nthreads().values()))

            def refill() -> list[Any]:
                started = []
                for config in feed(slots - len(futures)) if len(futures) < slots else []:
                    # the run_id is fixed per run: a re-execution finds its row
                    started.append(submit(config, new_run_id(), 1))
                    on_event("start", config, None)
                return started

            completed = as_completed(refill())
            for fut in completed:
                config, run_id, attempt = futures.pop(fut)
                try:
                    outcome = fut.result()
                except Exception as exc:  # the worker died (KilledWorker) or the task could not run at all
                    if attempt < 2:  # a run that merely shared a dying worker gets one more try
                        completed.add(submit(config, run_id, attempt + 1))
                        fut.release()
                        continue
                    row = failed_row(config, f"{type(exc).__name__}: {exc}")
                    row["run_id"] = run_id
                    write_run(results, row)
                    outcome = Outcome.of_row(row)
                fut.release()  # let the scheduler forget the result: a later worker death cannot resurrect it
                on_event("done", config, outcome)
                for started in refill():  # the finished run's row is stored: what it made possible starts
                    completed.add(started)
                yield config, outcome
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _register_setup(client: Any, setup: Callable[[], None]) -> None:
    """`setup` as a worker plugin: it also runs on workers restarted after a crash."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class SetupPlugin(WorkerPlugin):
        def setup(self, worker: Any) -> None:
            setup()

    client.register_plugin(SetupPlugin(), name="seqbench-setup")


EXECUTORS: dict[str, type[Executor]] = {cls.name: cls for cls in (Serial, Dask)}


def get_executor(name: str) -> type[Executor]:
    """The executor class registered under `name`, or an OptionsError with the alternatives."""
    try:
        return EXECUTORS[name]
    except KeyError:
        raise OptionsError(
            f"Unknown executor {name!r}.{suggest(name, EXECUTORS)} Available: {', '.join(EXECUTORS)}."
        ) from None
