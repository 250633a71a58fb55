"""`seqbench study`: a study's waves of runs until every model has its memory horizon on every task
(seqbench.study), resumable; `--status` prints where it stands without running anything."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from seqbench.errors import OptionsError, SeqbenchError
from seqbench.executors import EXECUTORS


@click.command()
@click.option(
    "--config",
    "config_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The study file (.yaml or .toml): models, ladders, learning rates, seeds, budget.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Only this model's climbs run now, repeatable (the same study: the rest waits for another invocation).",
)
@click.option("--quick", is_flag=True, help="Run the study's quick variant (its `quick:` section).")
@click.option("--status", is_flag=True, help="Only print where the study stands (nothing runs).")
@click.option("--executor", type=click.Choice(list(EXECUTORS)), help="Where runs execute.  [default: dask]")
@click.option("--jobs", type=int, help="Dask: workers of the local cluster.  [default: 2]")
@click.option(
    "--results", "results_dir", type=click.Path(file_okay=False), help="Store (default: the file's)."
)
def study(
    config_file: str,
    models: tuple[str, ...],
    quick: bool,
    status: bool,
    executor: str | None,
    jobs: int | None,
    results_dir: str | None,
) -> None:
    """Climb every task's ladder with every model: the learning rate chosen on the validation set at the
    easiest rung, then every seed rung by rung until the first rung not solved. Stored runs are reused, so
    an interrupted study resumes and the quick variant's runs count towards the whole study."""
    from seqbench.cli import _console, _fail, _sigterm_interrupts
    from seqbench.executors import get_executor
    from seqbench.progress import SweepProgress
    from seqbench.store import read_runs
    from seqbench.study import Study, load_study, progress_line, write_definition

    console = _console()
    try:
        spec = load_study(config_file, quick=quick, results=results_dir, executor=executor, jobs=jobs)
        the_study = Study(spec)
        unknown = sorted(set(models) - set(spec.models))
        if unknown:
            raise OptionsError(
                f"--model {', '.join(unknown)}: not in study {spec.name} ({', '.join(spec.models)})."
            )
        if status:
            _print_horizons(console, spec, the_study.pairs(read_runs(spec.results)))
            return
        write_definition(spec)
        runner = get_executor(spec.executor)(jobs=spec.jobs)
    except SeqbenchError as exc:
        _fail(exc)
    started = time.perf_counter()
    failed = 0
    progress = SweepProgress(0, grid=("lr",))
    last: dict[str, Any] = {"finished": None}

    def on_feed(n: int, pairs: list[Any]) -> None:
        progress.add(n)
        finished = sum(p.finished for p in pairs)
        if finished != last["finished"]:  # a line whenever a climb finishes (and at the start)
            last["finished"] = finished
            click.echo(
                f"study {spec.label}: {progress_line(pairs)}; {progress.done} runs done, "
                f"{progress.running + n} running ({runner.describe()}); "
                f"{(time.perf_counter() - started) / 60:.1f} min so far"
            )
        last["pairs"] = pairs

    with _sigterm_interrupts():
        try:
            with progress:
                for _, outcome in the_study.run(runner, progress.event, on_feed, list(models) or None):
                    failed += outcome.status not in ("ok", "diverged", "oom")
        except SeqbenchError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            click.echo(
                "Interrupted: stored runs are kept; run the same command again to resume the study.", err=True
            )
            sys.exit(130)
    pairs = last.get("pairs") or the_study.pairs(read_runs(spec.results))
    click.echo(
        f"study {spec.label}: {progress_line(pairs)} in {(time.perf_counter() - started) / 60:.1f} min"
    )
    _print_horizons(console, spec, pairs)
    if failed:
        click.echo(
            f"{failed} runs failed (stored with their error; the next invocation retries them).", err=True
        )
        sys.exit(min(failed, 125))


NOTES = (
    "horizon: the hardest rung solved (mean over seeds of the ladder's criterion), with the seeds that "
    "solved it on their own; 0: not even the easiest rung; …: still climbing; n/a: the model cannot take "
    "the task."
)


def _print_horizons(console: Any, spec: Any, pairs: list[Any], fmt: str = "table") -> None:
    import json

    from seqbench.study import CAPPED_NOTE, horizon_table
    from seqbench.tables import Table, to_markdown, to_rich

    columns, cells = horizon_table(spec, pairs)
    notes = NOTES + (" " + CAPPED_NOTE if any(p.capped for p in pairs) else "")
    table = Table(f"study {spec.label}: memory horizons", columns, cells, notes)
    if fmt == "markdown":
        click.echo(to_markdown(table), nl=False)
    elif fmt in ("csv", "json"):
        import pandas as pd

        frame = pd.DataFrame(cells, columns=columns)
        click.echo(
            frame.to_csv(index=False) if fmt == "csv" else json.dumps(frame.to_dict("records"), indent=2)
        )
    else:
        console.print(to_rich(table, width=console.width))


def print_study(console: Any, results_dir: str, name: str, runs: Any, fmt: str) -> None:
    """`seqbench leaderboard --study NAME`: a stored study's horizon table."""
    from seqbench.errors import OptionsError, suggest
    from seqbench.study import Study, stored_studies

    studies = {s.name: s for s in stored_studies(results_dir)}
    if name not in studies:
        known = ", ".join(studies) or "none"
        raise OptionsError(
            f"No study {name!r} stored under {results_dir}/.{suggest(name, studies)} Stored: {known}."
        )
    spec = studies[name]
    _print_horizons(console, spec, Study(spec).pairs(runs), fmt)
