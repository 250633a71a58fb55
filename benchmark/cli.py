"""The `seqbench` command. Heavy imports (torch, pandas, pyarrow) happen inside the commands that need them,
so `seqbench --help` and `seqbench ls` stay instant."""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from seqbench import __version__
from seqbench.errors import SeqbenchError
from seqbench.executors import EXECUTORS


def _console():
    """rich squeezes tables to 80 columns when stdout is not a terminal; logs and pipes get room instead
    (COLUMNS, where set, still says how wide)."""
    import os

    from rich.console import Console

    console = Console()
    if console.is_terminal:
        return console
    columns = os.environ.get("COLUMNS", "")
    return Console(width=int(columns) if columns.isdigit() else 200)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Treat SIGTERM (a scheduler's time limit, `kill`) like Ctrl-C, so the run so far is stored; a second
    SIGTERM while that happens is ignored (it would cut the storing short)."""

    def handler(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def option_flags(f: Callable) -> Callable:
    """--task-opt and --model-opt, repeatable KEY=VALUE pairs checked against the constructors."""
    f = click.option(
        "--model-opt", "model_opts", multiple=True, metavar="KEY=VALUE", help="Model option, repeatable."
    )(f)
    return click.option(
        "--task-opt", "task_opts", multiple=True, metavar="KEY=VALUE", help="Task option, repeatable."
    )(f)


def trainer_flags(f: Callable) -> Callable:
    """--trainer, --trainer-opt KEY=VALUE (repeatable) and --stream N (seqbench.trainers, seqbench.streaming)."""
    f = click.option(
        "--stream",
        type=int,
        help="Train and evaluate on an unending stream, N episodes per batch, state never reset.",
    )(f)
    f = click.option(
        "--trainer-opt", "trainer_opts", multiple=True, metavar="KEY=VALUE", help="Trainer option (k1=10)."
    )(f)
    return click.option("--trainer", help="bptt (default), tbptt, rtrl or uoro.")(f)


results_option = click.option(
    "--results", "results_dir", default="results", show_default=True, type=click.Path(file_okay=False)
)


@contextlib.contextmanager
def _status(console: Any, title: str) -> Iterator[Callable[[str], None]]:
    """A spinner with the latest message on a terminal; in a log or CI, one timestamped line per message."""
    if console.is_terminal:
        with console.status(title) as status:
            yield lambda msg: status.update(f"{title}: {msg}")
    else:
        import time

        yield lambda msg: click.echo(f"{time.strftime('%H:%M:%S')} {title}: {msg}", err=True)


def _fail(exc: SeqbenchError) -> None:
    click.echo(f"Error: {exc}", err=True)
    sys.exit(exc.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="seqbench")
def main() -> None:
    """seqbench: which sequence model remembers what, for how long, at what cost."""
    import os
    import warnings

    # Before torch loads its OpenMP runtime: waiting threads sleep rather than spin, so a run with several
    # threads degrades gracefully when something else runs (seqbench.threads; the user's setting wins).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    # seqbench's own warnings (a skipped store file, ...) as one line each, without Python's source echo.
    plain = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):
        if category.__module__.startswith("seqbench"):
            return f"Warning: {message}\n"
        return plain(message, category, filename, lineno, line)

    warnings.formatwarning = one_line


@main.command()
@click.option("--task", required=True, help="Task name (see `seqbench ls tasks`).")
@click.option("--model", required=True, help="Model name (see `seqbench ls models`).")
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seeds data and initialisation."
)
@click.option(
    "--preset",
    type=click.Choice(["smoke", "quick", "paper"]),
    default="quick",
    show_default=True,
    help="smoke: seconds; quick: minutes on a laptop CPU; paper: the paper's settings.",
)
@click.option("--steps", type=int, help="Optimiser steps (a solved run stops earlier).")
@click.option("--batch-size", type=int)
@click.option("--hidden-size", type=int, help="Width of the model (the NTM's controller size).")
@click.option(
    "--params", "params_target", type=int, help="Size the width so the network has about N parameters."
)
@click.option(
    "--state",
    "state_target",
    type=int,
    help="Size the width so the model carries about N floats per sequence (state_size, at the training length).",
)
@click.option("--lr", type=float, help="Learning rate.")
@click.option("--optimizer", type=click.Choice(["adam", "rmsprop", "sgd"]))
@click.option(
    "--clip", type=click.Choice(["norm", "value", "none"]), help="Gradient clipping: L2 norm or element-wise."
)
@click.option("--clip-value", type=float, help="Threshold for --clip.")
@click.option("--eval-every", type=int, help="Evaluate every N steps.")
@click.option("--threads", type=int, help="torch CPU threads (default: torch's).")
@click.option(
    "--compile", "compile", is_flag=True, default=None, help="torch.compile the model (off by default)."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@option_flags
@trainer_flags
@results_option
def run(
    task: str,
    model: str,
    seed: int,
    preset: str,
    task_opts: tuple[str, ...],
    model_opts: tuple[str, ...],
    device: str,
    results_dir: str,
    **train: Any,
) -> None:
    """Train MODEL on TASK once and store one result row under --results."""
    from seqbench.config import make_run_config
    from seqbench.options import parse_key_values
    from seqbench.progress import RunProgress
    from seqbench.runner import run as run_one

    try:
        config = make_run_config(
            task,
            model,
            task_options=parse_key_values(task_opts, "--task-opt"),
            model_options=parse_key_values(model_opts, "--model-opt"),
            seed=seed,
            preset=preset,
            device=device,
            params=train.pop("params_target"),
            state=train.pop("state_target"),
            trainer_options=parse_key_values(train.pop("trainer_opts"), "--trainer-opt") or None,
            **train,
        )
        steps = config.train.steps
        from seqbench.store import check_writable

        check_writable(results_dir)  # before training: a read-only store costs seconds, not the run
        with _sigterm_interrupts(), RunProgress(f"{task}/{model} seed {seed}", steps) as bar:
            try:
                row = run_one(config, results_dir, on_progress=bar.update)
            except KeyboardInterrupt:
                click.echo(
                    f"Interrupted: the run so far is stored under {results_dir}/ with status 'interrupted'.",
                    err=True,
                )
                sys.exit(130)
    except SeqbenchError as exc:
        _fail(exc)
    _print_summary(row, results_dir)
    if row["status"] != "ok":
        click.echo(f"Run ended with status {row['status']}: {(row['error'] or '').splitlines()[0]}", err=True)
        sys.exit(1)


def _print_summary(row: dict[str, Any], results_dir: str) -> None:
    from rich.table import Table

    def fmt(v: Any, spec: str = ".4g") -> str:
        return "-" if v is None else format(v, spec)

    table = Table(
        title=f"{row['task']} / {row['model']}  (seed {row['seed']}, {row['preset']})", show_header=False
    )
    table.add_column(style="bold")
    table.add_column()
    table.add_row("status", row["status"])
    table.add_row(f"accuracy (length {row['train_length']})", fmt(row["accuracy"]))
    for length, acc in json.loads(row["accuracy_by_length"] or "{}").items():
        table.add_row(f"  accuracy at {length}", fmt(acc, ".3f"))
    for k, v in json.loads(row["metrics"] or "{}").items():
        table.add_row(f"  {k}", fmt(v))
    table.add_row("loss", fmt(row["loss"]))
    table.add_row("solved", f"{row['solved']} (step {row['steps_to_solve']})" if row["solved"] else "no")
    table.add_row("steps / samples", f"{row['steps']} / {row['samples_seen']}")
    table.add_row("train time", f"{row['train_time_s']:.1f} s (wall {row['wall_time_s']:.1f} s)")
    table.add_row("train tokens/s", fmt(row["train_tokens_per_s"], ",.0f"))
    table.add_row("inference tokens/s", fmt(row["infer_tokens_per_s"], ",.0f"))
    mem = row["peak_memory_bytes"]
    table.add_row(f"peak memory ({row['memory_kind']})", "-" if mem is None else f"{mem / 2**20:.1f} MiB")
    table.add_row("params / state size", f"{fmt(row['params'], ',')} / {fmt(row['state_size'], ',')}")
    table.add_row("stored", f"{results_dir}/runs/{row['run_id']}.parquet")
    _console().print(table)


def _parse_grid(pairs: tuple[str, ...]) -> dict[str, list[Any]]:
    """`--grid lr=1e-3,3e-3 --grid model.num_layers=1,2` -> {"lr": [0.001, 0.003], ...}."""
    from seqbench.errors import OptionsError
    from seqbench.options import parse_key_values

    grid: dict[str, list[Any]] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key or not raw:
            raise OptionsError(f"--grid expects KEY=V1,V2,..., got {pair!r} (e.g. --grid lr=1e-3,3e-3).")
        grid[key.strip()] = [parse_key_values([f"v={v}"], "--grid")["v"] for v in raw.split(",")]
    return grid


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    help="A sweep file (.yaml or .toml) with the same settings; flags given here override it.",
)
@click.option("--task", "tasks", multiple=True, help="Task name, repeatable.")
@click.option("--model", "models", multiple=True, help="Model name, repeatable.")
@click.option("--seeds", type=int, help="Seeds 0..N-1 for every configuration.  [default: 1]")
@click.option(
    "--grid", multiple=True, metavar="KEY=V1,V2", help="Training setting or task./model. option, repeatable."
)
@click.option("--params", multiple=True, type=int, help="Size each model to about N parameters, repeatable.")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=int,
    help="Size each model to about N floats of state per sequence, repeatable (beside --params: both views).",
)
@click.option("--preset", type=click.Choice(["smoke", "quick", "paper"]))
@click.option("--steps", type=int, help="Optimiser steps for every run.")
@click.option("--task-opt", "task_opts", multiple=True, metavar="KEY=VALUE")
@click.option("--model-opt", "model_opts", multiple=True, metavar="KEY=VALUE")
@click.option(
    "--executor",
    type=click.Choice(list(EXECUTORS)),
    help="; ".join(f"{name}: {cls.help}" for name, cls in EXECUTORS.items()) + ".",
)
@click.option(
    "--same-process",
    is_flag=True,
    help="Serial: run every configuration in this process instead of a fresh one each (saves ~2 s per "
    "run, but a process that has run before reads CPU peak memory too low).",
)
@click.option("--jobs", type=int, help="Dask: workers of the local cluster (one thread each).  [default: 2]")
@click.option("--scheduler", help="Dask: address of an existing scheduler (e.g. tcp://host:8786).")
@click.option("--threads", type=int, help="torch threads per run (Dask workers: 1 unless given).")
@click.option("--device", help="auto, cpu or cuda (Dask on GPUs: one run per GPU).")
@click.option("--rerun", is_flag=True, help="Run configurations that are already stored, too.")
@click.option("--results", "results_dir", type=click.Path(file_okay=False), help="Store.  [default: results]")
@trainer_flags
def sweep(
    config_file: str | None,
    tasks: tuple[str, ...],
    models: tuple[str, ...],
    grid: tuple[str, ...],
    params: tuple[int, ...],
    states: tuple[int, ...],
    task_opts: tuple[str, ...],
    model_opts: tuple[str, ...],
    steps: int | None,
    results_dir: str | None,
    trainer: str | None,
    trainer_opts: tuple[str, ...],
    stream: int | None,
    **flags: Any,
) -> None:
    """Run the cross product of tasks, models, grid, sizes and seeds; skip what is already stored.

    Exits with the number of failed runs (0 when all succeeded)."""
    from seqbench import sweep as sw
    from seqbench.options import parse_key_values
    from seqbench.progress import SweepProgress

    try:
        values: dict[str, Any] = sw.load_spec_file(config_file) if config_file else {}
        if tasks:
            values["tasks"] = list(tasks)
        if models:
            values["models"] = list(models)
        if grid:
            values["grid"] = {**values.get("grid", {}), **_parse_grid(grid)}
        if params:
            values["params"] = list(params)
        if states:
            values["states"] = list(states)
        if task_opts:
            values["task_options"] = {
                **values.get("task_options", {}),
                **parse_key_values(task_opts, "--task-opt"),
            }
        if model_opts:
            values["model_options"] = {
                **values.get("model_options", {}),
                **parse_key_values(model_opts, "--model-opt"),
            }
        if steps is not None:
            values["train"] = {**values.get("train", {}), "steps": steps}
        for key, value in (
            ("trainer", trainer),
            ("trainer_options", parse_key_values(trainer_opts, "--trainer-opt") or None),
            ("stream", stream),
        ):
            if value is not None:
                values["train"] = {**values.get("train", {}), key: value}
        if results_dir is not None:
            values["results"] = results_dir
        values.update({k: v for k, v in flags.items() if v not in (None, False)})
        spec = sw.make_spec(values)
        configs = sw.expand(spec)  # with the executor's per-run defaults (Dask: one torch thread per run)
        todo = sw.pending(configs, spec.results, spec.rerun)
        executor = sw.executor_for(spec)
    except SeqbenchError as exc:
        _fail(exc)
    click.echo(
        f"sweep: {len(configs)} runs, {len(configs) - len(todo)} already stored, {len(todo)} to run "
        f"({executor.describe()})"
    )
    outcomes = []
    with _sigterm_interrupts(), SweepProgress(len(todo), grid=tuple(spec.grid)) as bar:
        try:
            outcomes = [outcome for _, outcome in executor.run(todo, spec.results, bar.event)]
        except SeqbenchError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            click.echo(
                "Interrupted: stored runs are kept; run the same command again to finish the sweep.", err=True
            )
            sys.exit(130)
    summary = sw.summarise(outcomes)
    click.echo(f"sweep done: {summary['ok']} ok, {summary['failed']} failed, stored under {spec.results}/")
    if summary["failed"]:
        sys.exit(min(summary["failed"], 125))


@main.command(name="ls")
@click.argument("what", type=click.Choice(["tasks", "models", "plugins"]))
@click.argument("pattern", required=False)
def ls(what: str, pattern: str | None) -> None:
    """List registered tasks or models (optionally matching a wildcard PATTERN) with their providers;
    `ls plugins` lists every providing package and loads each name to report the ones that fail."""
    from seqbench.registry import MODELS, TASKS

    if what == "plugins":
        _ls_plugins()
        return
    registry = TASKS if what == "tasks" else MODELS
    providers = registry.providers()
    names = registry.names(pattern)
    width = max([24, *(len(n) for n in names)])
    for name in names:
        who = ", ".join(p.spec for p in providers[name])
        flag = "   <- provided twice: using it is an error" if len(providers[name]) > 1 else ""
        click.echo(f"{name:<{width}} {who}{flag}")


def _ls_plugins() -> None:
    import os

    from seqbench.errors import SeqbenchError
    from seqbench.registry import DISABLE_AUTOLOAD_ENV, MODELS, TASKS

    by_package: dict[str, list[str]] = {}
    failures = []
    for registry in (TASKS, MODELS):
        for name, providers in registry.providers().items():
            for p in providers:
                by_package.setdefault(p.spec, []).append(f"{registry.kind} {name}")
            try:
                registry.get(name)
            except SeqbenchError as exc:
                failures.append(f"{registry.kind} {name}: {exc}")
    for spec in sorted(by_package, key=lambda s: (not s.startswith("seqbench=="), s)):
        click.echo(f"{spec}: {', '.join(sorted(by_package[spec]))}")
    if os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip() not in ("", "0"):
        click.echo(f"({DISABLE_AUTOLOAD_ENV} is set: only seqbench's own providers are loaded)")
    if failures:
        click.echo("\nFailed to load:", err=True)
        for line in failures:
            click.echo(f"  {line}", err=True)
        sys.exit(1)  # a broken plugin is a failure a script or CI should see


@main.command()
@click.option("--task", help="Only this task.")
@click.option("--model", help="Only this model.")
@click.option(
    "--by",
    type=click.Choice(["params", "state_size"]),
    help="Group by size: compare models at equal parameter count or state size.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "markdown", "csv", "json"]),
    default="table",
    show_default=True,
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.9,
    show_default=True,
    help="Accuracy (in (0, 1]) that defines the memory horizon.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False), help="Also write the leaderboard to this Parquet file."
)
@click.option(
    "--study",
    "study_name",
    help="A study stored here (`seqbench study`): its horizons, models x tasks, instead of the runs.",
)
@results_option
def leaderboard(
    task: str | None,
    model: str | None,
    by: str | None,
    fmt: str,
    threshold: float,
    out: str | None,
    study_name: str | None,
    results_dir: str,
) -> None:
    """Per task and model (and size), aggregated over seeds: accuracy mean, sd, 95% CI, memory horizon,
    steps and time to solve, speed, memory and size. With --study, a study's horizon table."""
    from seqbench.leaderboard import aggregate, board_table, sort_board
    from seqbench.registry import MODELS, TASKS
    from seqbench.store import read_runs
    from seqbench.tables import to_markdown, to_rich

    runs = read_runs(results_dir)
    if study_name:
        from seqbench.cli_study import print_study

        try:
            print_study(_console(), results_dir, study_name, runs, fmt)
        except SeqbenchError as exc:
            _fail(exc)
        return
    try:
        for registry, name, column in ((TASKS, task, "task"), (MODELS, model, "model")):
            if name and name not in set(runs[column]) and name not in registry:
                registry.provider(name)  # unknown everywhere: "Did you mean ...", exit 2
    except SeqbenchError as exc:
        _fail(exc)
    board = aggregate(runs, task=task, model=model, horizon_threshold=threshold)
    if board.empty:
        click.echo(
            f"No runs stored under {results_dir}/ yet. Try: seqbench run --task copy --model lstm", err=True
        )
        return
    board = sort_board(board, by)
    if out:
        from seqbench.store import refuse_inside_store, write_table

        try:
            refuse_inside_store(out, results_dir)
        except SeqbenchError as exc:
            _fail(exc)
        write_table(board, out)
    if fmt == "csv":
        click.echo(board.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(board.to_json(orient="records", indent=2))
    else:
        title = f"seqbench leaderboard ({results_dir})"
        table = board_table(board, by, title=title, terminal=fmt == "table")
        if fmt == "markdown":
            click.echo(to_markdown(table), nl=False)
        else:
            console = _console()
            console.print(to_rich(table, width=console.width))


@main.command()
@click.option("--model", "models", multiple=True, help="Model to measure, repeatable (default: every one).")
@click.option(
    "--hidden",
    "hidden",
    multiple=True,
    type=click.IntRange(min=1),
    help="Hidden size, repeatable [default: 128].",
)
@click.option(
    "--length",
    "lengths",
    multiple=True,
    type=click.IntRange(min=1),
    help="Length, repeatable [100, 500, 2000].",
)
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--input-size", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--rounds",
    default=5,
    show_default=True,
    type=click.IntRange(min=1),
    help="Timed rounds (halved beyond 500).",
)
@click.option(
    "--threads",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="torch CPU threads (CPU only).",
)
@click.option("--no-memory", is_flag=True, help="Skip peak memory (a fresh process per model on the CPU).")
@click.option("--no-flops", is_flag=True, help="Skip counting FLOPs.")
@click.option("--overhead", is_flag=True, help="Also measure the training loop's overhead (see below).")
@click.option(
    "--overhead-steps",
    type=click.IntRange(min=1),
    help="Training steps of the --overhead runs [the quick preset's: 4000 on copy].",
)
@click.option("--batching", is_flag=True, help="Also measure sequences/s at batch 1 and 32 on copy.")
@click.option(
    "--model-opt",
    "model_opts",
    multiple=True,
    metavar="KEY=VALUE",
    help="Model option for every --model, repeatable (a model that does not take it is an error).",
)
@click.option("--markdown", type=click.Path(dir_okay=False), help="Also write the table as Markdown here.")
@results_option
def bench(
    models: tuple[str, ...],
    hidden: tuple[int, ...],
    lengths: tuple[int, ...],
    batch_size: int,
    input_size: int,
    device: str,
    rounds: int,
    threads: int,
    no_memory: bool,
    no_flops: bool,
    overhead: bool,
    overhead_steps: int | None,
    batching: bool,
    model_opts: tuple[str, ...],
    markdown: str | None,
    results_dir: str,
) -> None:
    """Speed and memory of each model as ratios to torch.nn.LSTM, measured in the same run.

    Rows are stored under RESULTS/bench/. With --overhead, each model also trains on the copy task through
    the runner (a whole quick-preset run unless --overhead-steps) and through a bare loop over the same
    batches: what the training loop (data, metrics, logging, evaluation) adds to the model's own steps. With --batching, the copy task's sequences/s at batch 1 and 32."""
    from seqbench import bench as b
    from seqbench.errors import OptionsError
    from seqbench.options import parse_key_values, resolve_options
    from seqbench.registry import MODELS
    from seqbench.store import write_bench
    from seqbench.tables import to_markdown, to_rich

    names = list(models) or MODELS.names()
    options: dict[str, dict] = {}
    if model_opts:
        if not models:
            _fail(OptionsError("--model-opt needs the models it is for: name them with --model."))
        given = parse_key_values(model_opts, "--model-opt")
        try:  # each model's constructor checks and coerces them, as a run's configuration does
            for name in names:
                resolved = resolve_options(MODELS.get(name), given, f"model {name!r}")
                options[name] = {k: resolved[k] for k in given}
        except SeqbenchError as exc:
            _fail(exc)
    spec = b.BenchSpec(
        models=names,
        model_options=options,
        hidden=list(hidden) or [128],
        lengths=list(lengths) or [100, 500, 2000],
        batch_size=batch_size,
        input_size=input_size,
        device=device,
        rounds=rounds,
        threads=threads,
        memory=not no_memory,
        flops=not no_flops,
    )
    console = _console()
    try:
        with _status(console, "bench") as say:
            rows = b.run_bench(spec, on_progress=say)
            path = write_bench(results_dir, rows)
            extra = []
            if overhead:
                extra.append(b.overhead_table(spec.models, spec.device, say, overhead_steps))
            if batching:
                extra.append(b.batching_table(spec.models, spec.device, say))
    except SeqbenchError as exc:
        _fail(exc)
    tables = [b.bench_table(rows), *extra]
    for table in tables:
        console.print(to_rich(table))
    click.echo(f"{len(rows)} rows stored in {path}")
    if markdown:
        Path(markdown).write_text("\n".join(to_markdown(t) for t in tables))


@main.command()
@click.option("--model", required=True, help="Model to probe.")
@click.option("--task", default="adding", show_default=True)
@click.option("--steps", default=500, show_default=True, help="Training steps between the two profiles.")
@click.option("--seed", default=0, show_default=True)
@click.option("--hidden-size", type=int, help="Width (default: the quick preset's).")
@click.option("--device", default="cpu", show_default=True)
@option_flags
@results_option
def probe(
    model: str,
    task: str,
    steps: int,
    seed: int,
    hidden_size: int | None,
    device: str,
    task_opts: tuple[str, ...],
    model_opts: tuple[str, ...],
    results_dir: str,
) -> None:
    """Gradient flow: the norm of the gradient of the last answer's loss with respect to the input at
    each earlier step, at initialisation and after --steps training steps (stored for the report)."""
    from seqbench import probe as p
    from seqbench.options import parse_key_values
    from seqbench.store import write_probe
    from seqbench.tables import Table, to_rich

    try:
        with _status(_console(), f"probe {task}/{model}") as say:
            say(f"training {steps} steps")
            rows = p.probe(
                task,
                model,
                steps=steps,
                seed=seed,
                task_options=parse_key_values(task_opts, "--task-opt"),
                model_options=parse_key_values(model_opts, "--model-opt"),
                hidden_size=hidden_size,
                device=device,
            )
    except SeqbenchError as exc:
        _fail(exc)
    path = write_probe(results_dir, rows)
    last = max(r["distance"] for r in rows)
    distances = [d for d in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000) if d <= last]
    value = {(r["stage"], r["distance"]): r["relative"] for r in rows}
    cells = [[stage, *(f"{value[stage, d]:.1e}" for d in distances)] for stage in ("init", "trained")]
    notes = (
        "||dL/dx_t|| relative to its value at the last scored step (distance 0), mean over 64 sequences at "
        f"length {rows[0]['length']}; trained = after {steps} steps. Stored in {path}."
    )
    title = f"gradient reaching back: {task} / {model}"
    _console().print(to_rich(Table(title, ["distance", *map(str, distances)], cells, notes)))


@main.command()
@click.option(
    "--task", "tasks", multiple=True, help="Only this task, repeatable (default: every task stored)."
)
@click.option("--out", type=click.Path(dir_okay=False), help="Output file [report.html or report.md].")
@click.option("--format", "fmt", type=click.Choice(["html", "markdown"]), default="html", show_default=True)
@click.option("--interactive", is_flag=True, help="Plotly figures (its bundle inlined) instead of SVG.")
@results_option
def report(tasks: tuple[str, ...], out: str | None, fmt: str, interactive: bool, results_dir: str) -> None:
    """Write a self-contained HTML report (or Markdown): leaderboards, learning curves, accuracy against
    length, speed against accuracy, bench and probe figures, run configurations."""
    from seqbench.report import build_report

    if interactive and fmt != "html":
        raise click.UsageError("--interactive needs --format html.")
    if interactive:
        try:
            import plotly  # noqa: F401
        except ImportError:
            raise click.UsageError(
                "--interactive needs plotly: pip install 'seqbench[interactive]'."
            ) from None
    target = Path(out or ("report.md" if fmt == "markdown" else "report.html"))
    if not _writable_dir(target.parent):
        click.echo(f"Error: cannot write the report to {target}: {target.parent}/ is not writable.", err=True)
        sys.exit(2)
    try:
        path = build_report(results_dir, out, list(tasks) or None, fmt, interactive)
    except FileNotFoundError as exc:
        click.echo(f"Error: {exc}. Run some first: seqbench run --task copy --model lstm", err=True)
        sys.exit(2)
    except OSError as exc:  # became unwritable meanwhile, a full disk
        click.echo(f"Error: cannot write the report to {target}: {exc.strerror or exc}.", err=True)
        sys.exit(2)
    click.echo(f"Report written to {path}")


@main.command()
@click.option(
    "--stale-after",
    type=click.FloatRange(min=0),
    default=3600,
    show_default=True,
    help="Remove temporary .partial files older than this many seconds (killed writers' leftovers).",
)
@results_option
def compact(stale_after: float, results_dir: str) -> None:
    """Merge the store's one-run files (runs/, curves/) into one Parquet file each, safely while runs are
    stored and read, and remove stale partial files. Readers read either layout."""
    from seqbench.compact import compact as run_compact

    try:
        result = run_compact(results_dir, stale_after)
    except SeqbenchError as exc:
        _fail(exc)
    for f in result.folders:
        merged = f"{f.merged_files} files -> {f.output} ({f.rows} rows)" if f.output else "nothing to merge"
        click.echo(f"{f.folder}: {merged}; {f.stale_partials} stale partial files removed")


def _writable_dir(folder: Path) -> bool:
    """Whether files can be created in `folder` (creating it if needed): tried, not guessed from modes."""
    import uuid

    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".tmp-{uuid.uuid4().hex}.partial"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


from seqbench.cli_study import study  # noqa: E402  (its own module: cli.py is long enough)

main.add_command(study)

if __name__ == "__main__":
    main()
