"""Studies: how long each model remembers. Every task climbs a ladder of difficulty, every model climbs it
from the easiest rung, and its memory horizon is the hardest rung it solves.

    seqbench study --config results/reference/study.yaml              # the whole study, resumable
    seqbench study --config results/reference/study.yaml --quick      # its quick variant

The protocol, per (task, model), each decision read off the stored rows (so an interrupted study resumes
where it stopped, and a larger one reuses every run a smaller one made):

1. **Learning rate.** One run per rate of the grid (`lrs`, at least 3) on the easiest rung, seed 0. The rate
   with the best accuracy on the *validation* set (`val_accuracy`: its own seed, never the test set's) is
   chosen; within 0.01 of the best, the one that solved in fewer steps, then the lower validation loss. Every
   run of a study monitors the validation set (`train.monitor = "validation"`): the evaluations during
   training, the solve and the early stop never read the test set.
2. **Climb.** At the chosen rate, every seed on the easiest rung, then the next rung, and so on. A rung is
   solved when the mean over seeds of its criterion (test accuracy >= `threshold` by default; the adding
   problem's literature criterion, MSE < 0.01, with `metric: mse`, `below: true`) holds. The first rung not
   solved ends the climb: the model's **horizon** is the last rung solved (0 when none), and the harder rungs
   are not run (their outcome is known well enough, and the budget goes where models still learn).

Every model is sized to the study's `params` (parameters), or, for the second view at equal state size,
to its `state` (floats carried per sequence, `state_size`, at each rung's training length: an attention
model's growing cache is counted at that length, so its width shrinks as the rungs get longer; see
`network.hidden_for_state`). A model whose state no width reaches (the NTM's memory alone is larger than a
small budget) is refused with the reason, and its cells read n/a. A state study is a file of its own (its
own `name`), with `state:` in place of `params:`.

Runs are handed to the study's executor (Dask with 2 workers by default) as it can start them: whenever a
worker frees, the decisions are read again off the store and the slowest run that can start now goes to
it, so a climb's next rung starts as soon as its last rung's runs are stored (an executor that cannot
take work this way gets everything that can start, waits for all of it, and asks again). The study's
definition is written beside its runs (`studies/<name>.json`) for `seqbench report` and `seqbench
leaderboard --study`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd
import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from seqbench.config import RunConfig, make_run_config
from seqbench.errors import OptionsError, SeqbenchError
from seqbench.executors import Executor, Outcome, get_executor
from seqbench.leaderboard import t95

STUDIES = "studies"  # <results>/studies/<name>.json: the definitions of the studies stored there
#: Statuses that are a run's result (a diverged run learned nothing, and that is its outcome); an `error`
#: or `interrupted` row is retried, once per invocation.
FINAL = ("ok", "diverged", "oom")
RUNG = "{rung}"  # in a ladder's options: replaced by the rung's value


class Ladder(BaseModel):
    """One task's ladder: the option that sets how far back the model must remember, and its rungs."""

    model_config = ConfigDict(extra="forbid")

    knob: str = Field(description="the task option each rung sets")
    rungs: list[Any] = Field(min_length=1, description="easiest first")
    options: dict[str, Any] = Field(
        default_factory=dict, description='fixed task options; "{rung}" in a value is the rung'
    )
    train: dict[str, Any] = Field(default_factory=dict, description="this task's training settings")
    metric: str = "accuracy"  # the task's metric that decides a rung
    threshold: float = 0.9
    below: bool = False  # solved when the metric is below the threshold (an error, such as mse)

    def task_options(self, rung: Any) -> dict[str, Any]:
        def fill(value: Any) -> Any:
            if value == RUNG:
                return rung
            if isinstance(value, list):
                return [fill(v) for v in value]
            return value

        return {**{k: fill(v) for k, v in self.options.items()}, self.knob: rung}

    def solves(self, value: float) -> bool:
        if value != value:  # NaN: not solved
            return False
        return value < self.threshold if self.below else value >= self.threshold


class StudySpec(BaseModel):
    """A study: models x ladders, one size budget (parameters, or with `state` floats of state per
    sequence), a learning-rate grid, seeds."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    # Added later, like `state`: left out of the stored definition while 1. A study whose definition changes
    # (a ladder's rungs, its models, its budget) keeps its name and gets the next version; its runs, keyed
    # by their own configurations, stay valid under both.
    version: int = Field(1, ge=1, description="the definition's version: raised whenever it changes")
    description: str = ""
    models: list[str] = Field(min_length=1)
    tasks: dict[str, Ladder] = Field(min_length=1)
    seeds: int = Field(3, ge=1)
    lrs: list[float] = Field(min_length=3, description="the learning-rate grid, chosen on the easiest rung")
    params: int | None = Field(None, ge=1, description="every model sized to this many parameters")
    # Added later: the equal-state view. Left out of the stored definition when None (`write_definition`),
    # so a parameter-sized study's definition and its runs' hashes are what they were.
    state: int | None = Field(
        None,
        ge=1,
        description="instead of params: every model sized to this many floats of state per sequence at each "
        "rung's training length (network.hidden_for_state)",
    )
    preset: str = "quick"
    train: dict[str, Any] = Field(default_factory=dict)
    model_options: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per model")
    executor: str = "dask"
    jobs: int | None = Field(2, ge=1)
    threads: int | None = Field(1, ge=1)
    results: str = "results"
    quick: dict[str, Any] = Field(
        default_factory=dict, description="what --quick changes (models, tasks, seeds, ...)"
    )

    @property
    def label(self) -> str:
        """The study's name as reports show it: with its version from version 2 on."""
        return self.name if self.version == 1 else f"{self.name} v{self.version}"

    @field_validator("executor")
    @classmethod
    def _known_executor(cls, name: str) -> str:
        get_executor(name)
        return name

    @field_validator("lrs")
    @classmethod
    def _distinct(cls, lrs: list[float]) -> list[float]:
        if len(set(lrs)) != len(lrs) or min(lrs) <= 0:
            raise ValueError("learning rates must be positive and distinct")
        return sorted(lrs)

    @model_validator(mode="after")
    def _one_size(self) -> StudySpec:
        if (self.params is None) == (self.state is None):
            raise ValueError(
                "give the size budget as params (parameters) or as state (floats of state per sequence): "
                + ("not both" if self.params is not None else "one of them")
            )
        return self

    @model_validator(mode="after")
    def _known_names(self) -> StudySpec:
        from seqbench.registry import MODELS, TASKS

        for name in self.models:
            MODELS.get(name)  # an UnknownNameError with suggestions
        for name in self.tasks:
            TASKS.get(name)
        unknown = set(self.model_options) - set(self.models)
        if unknown:
            raise ValueError(f"model_options for models not in the study: {', '.join(sorted(unknown))}")
        return self


def load_study(path: str | Path, quick: bool = False, **overrides: Any) -> StudySpec:
    """A study file (YAML or TOML); with `quick`, its `quick:` section applied (a subset that shares its
    runs with the whole study); `overrides` (results, executor, jobs) last."""
    from seqbench.sweep import load_spec_file, validation_problems

    values = load_spec_file(path)
    if quick:
        changes = dict(values.get("quick") or {})
        if not changes:
            raise OptionsError(
                f"{path}: --quick needs a `quick:` section saying what the quick variant runs."
            )
        tasks = changes.pop("tasks", None)
        if tasks is not None:  # a list of task names, or ladders (merged into the full ones)
            full = values.get("tasks") or {}
            if isinstance(tasks, list):
                tasks = {t: {} for t in tasks}
            unknown = sorted(set(tasks) - set(full))
            if unknown:
                raise OptionsError(
                    f"{path}: the quick variant names tasks the study does not have: {unknown}."
                )
            values["tasks"] = {t: {**full[t], **(ladder or {})} for t, ladder in tasks.items()}
        base = {**values, **changes, "name": values["name"] + "-quick"}
        if "description" not in changes:  # the whole study's words do not describe its subset
            models = base.get("models", [])
            seeds = base.get("seeds", 3)
            base["description"] = (
                f"The quick variant of study {values['name']}: {len(models)} of its models, "
                f"{seeds} seed{'s' if seeds != 1 else ''} per rung; its runs are the whole study's own."
            )
        values = base
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return StudySpec(**values)
    except pydantic.ValidationError as exc:
        raise OptionsError(f"Invalid study {path}: {validation_problems(exc)}.") from None


# The state of a study, read off the stored rows


@dataclass
class Rung:
    """One rung of one (task, model) at the chosen rate: its seeds' rows and what they decide."""

    value: Any
    rows: list[dict[str, Any]]
    seeds: int  # how many the study asks for
    criterion: Ladder

    @property
    def complete(self) -> bool:
        return len(self.rows) >= self.seeds

    def scores(self, metric: str | None = None) -> list[float]:
        metric = metric or self.criterion.metric
        return [_metric(r, metric) for r in self.rows]

    @property
    def accuracy(self) -> float:
        values = self.scores("accuracy")
        return sum(values) / len(values) if values else float("nan")

    @property
    def accuracy_ci95(self) -> float:
        values = self.scores("accuracy")
        n = len(values)
        if n < 2:
            return float("nan")
        mean = sum(values) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        return t95(n - 1) * sd / math.sqrt(n)

    @property
    def score(self) -> float:
        values = self.scores()
        return sum(values) / len(values) if values else float("nan")

    @property
    def solved(self) -> bool:
        return self.complete and self.criterion.solves(self.score)

    @property
    def seeds_solved(self) -> int:
        """Seeds whose own score meets the criterion."""
        return sum(self.criterion.solves(v) for v in self.scores())


@dataclass
class Pair:
    """One (task, model) of a study: its learning-rate runs, its rungs so far, and what it needs next."""

    task: str
    model: str
    ladder: Ladder
    lr_rows: dict[float, dict[str, Any] | None] = field(default_factory=dict)
    lr: float | None = None
    rungs: list[Rung] = field(default_factory=list)
    next: list[RunConfig] = field(default_factory=list)
    params: int | None = None
    state_size: int | None = None
    error: str | None = None  # the model cannot run this task (its configuration was refused)
    # The climb's next rung cannot be sized to the budget (at equal state, an attention model's cache at that
    # rung's length is larger than the whole budget): the climb ends there, its horizon is what it solved.
    capped: str | None = None

    @property
    def done(self) -> bool:
        return not self.next

    @property
    def horizon(self) -> Any:
        """The last rung solved; 0 when none is (None while the easiest rung is undecided)."""
        if not self.rungs:
            return None
        best = 0
        for rung in self.rungs:
            if not rung.complete:
                return best if best else None
            if not rung.solved:
                return best
            best = rung.value
        return best

    @property
    def finished(self) -> bool:
        """The climb is over: a rung failed, or the ladder's top was solved (or the model cannot run it)."""
        if self.error or self.capped:
            return True
        if not self.rungs or not self.rungs[-1].complete:
            return False
        return not self.rungs[-1].solved or len(self.rungs) == len(self.ladder.rungs)


def _metric(row: dict[str, Any], metric: str) -> float:
    """A row's figure: its primary accuracy, or one of its task's metrics; a run that did not finish
    (diverged, out of memory) scores what it stored, and NaN where it stored nothing."""
    if metric == "accuracy":
        value = row.get("accuracy")
    elif metric == "loss":
        value = row.get("loss")
    else:
        value = json.loads(row.get("metrics") or "{}").get(metric)
    if value is None or value != value:
        if row.get("status") in ("diverged", "oom") and metric == "accuracy":
            return 0.0  # it learned nothing it could be scored on
        return float("nan")
    return float(value)


class Study:
    """A study bound to its store: configurations, the state read off the stored rows, and the waves."""

    def __init__(self, spec: StudySpec) -> None:
        self.spec = spec
        self._configs: dict[tuple[Any, ...], RunConfig] = {}

    # configurations

    def config(self, task: str, model: str, rung: Any, lr: float, seed: int) -> RunConfig:
        key = (task, model, json.dumps(rung), lr)
        base = self._configs.get(key)
        if base is None:
            ladder = self.spec.tasks[task]
            train = {**self.spec.train, **ladder.train, "lr": lr, "monitor": "validation"}
            if self.spec.threads is not None:
                train["threads"] = self.spec.threads
            base = _sized_config(
                task,
                model,
                json.dumps(ladder.task_options(rung), sort_keys=True),
                json.dumps(self.spec.model_options.get(model, {}), sort_keys=True),
                self.spec.params,
                self.spec.state,
                self.spec.preset,
                json.dumps(train, sort_keys=True),
            )
            self._configs[key] = base
        return base.model_copy(update={"seed": seed})

    # state

    def pairs(self, runs: pd.DataFrame, attempted: set[tuple[str, int]] | None = None) -> list[Pair]:
        """Every (task, model) with what it has and what it needs next. `attempted`: (config_hash, seed)
        already tried in this invocation; one that stored no final row is not asked for again (it failed
        twice: it is left for the next invocation, and the climb waits)."""
        stored = _final_rows(runs)
        attempted = attempted or set()
        out = []
        for task, ladder in self.spec.tasks.items():
            for model in self.spec.models:
                out.append(self._pair(task, model, ladder, stored, attempted))
        return out

    def _pair(
        self,
        task: str,
        model: str,
        ladder: Ladder,
        stored: dict[tuple[str, int], dict[str, Any]],
        attempted: set[tuple[str, int]],
    ) -> Pair:
        pair = Pair(task, model, ladder)
        missing: list[RunConfig] = []

        def lookup(config: RunConfig) -> dict[str, Any] | None:
            key = (config.config_hash(), config.seed)
            row = stored.get(key)
            if row is None and key not in attempted:
                missing.append(config)
            return row

        easiest = ladder.rungs[0]
        try:
            for lr in self.spec.lrs:
                pair.lr_rows[lr] = lookup(self.config(task, model, easiest, lr, 0))
        except OptionsError as exc:  # this model cannot take this task: said in the table, the rest goes on
            pair.error, pair.lr_rows = str(exc), {}
            return pair
        known = [r for r in pair.lr_rows.values() if r is not None]
        if known:
            pair.params, pair.state_size = _int(known[0].get("params")), _int(known[0].get("state_size"))
        if missing or any(r is None for r in pair.lr_rows.values()):
            pair.next = missing
            return pair
        pair.lr = choose_lr(pair.lr_rows)
        for value in ladder.rungs:
            rows = []
            try:
                configs = [self.config(task, model, value, pair.lr, seed) for seed in range(self.spec.seeds)]
            except OptionsError as exc:  # the budget cannot size this rung: the climb ends below it
                pair.capped = f"rung {value}: {exc}"
                break
            for config in configs:
                row = lookup(config)
                if row is not None:
                    rows.append(row)
            rung = Rung(value, rows, self.spec.seeds, ladder)
            pair.rungs.append(rung)
            if not rung.complete or not rung.solved:
                break
        pair.next = missing
        return pair

    # running

    def run(
        self,
        executor: Executor,
        on_event: Callable[[str, RunConfig, Outcome | None], None],
        on_feed: Callable[[int, list[Pair]], None] | None = None,
        models: list[str] | None = None,
    ) -> Iterator[tuple[RunConfig, Outcome]]:
        """Run until every (task, model) has its horizon; yields each finished run. The executor asks for
        work whenever it can start some (`Executor.run_feed`): each time, the climbs are read afresh off the
        store, so a climb's next rung starts as soon as its last rung's runs are stored, not when every
        other climb's runs are (slowest first among what can start: `order_by_cost`). `on_feed(n, pairs)`:
        n runs handed out just now, and where the study stands. `models`: only these models' climbs run
        this time (the same study, split across invocations or machines)."""
        from seqbench.store import read_runs

        write_definition(self.spec)
        attempted: set[tuple[str, int]] = set()

        def feed(n: int) -> list[RunConfig]:
            runs = read_runs(self.spec.results)
            pairs = self.pairs(runs, attempted)
            todo = [c for p in pairs if models is None or p.model in models for c in p.next]
            todo = order_by_cost(todo, runs)[:n]
            attempted.update((c.config_hash(), c.seed) for c in todo)
            if on_feed is not None:
                on_feed(len(todo), pairs)
            return todo

        yield from executor.run_feed(feed, self.spec.results, on_event)


@lru_cache(maxsize=4096)
def _sized_config(
    task: str,
    model: str,
    task_options: str,
    model_options: str,
    params: int | None,
    state: int | None,
    preset: str,
    train: str,
) -> RunConfig:
    """One configuration sized to the budget, parameters or state (the width search is the slow part:
    cached). A model whose state cannot reach the budget is an OptionsError: the study shows n/a there."""
    try:
        return make_run_config(
            task,
            model,
            task_options=json.loads(task_options),
            model_options=json.loads(model_options),
            preset=preset,
            params=params,
            state=state,
            **json.loads(train),
        )
    except SeqbenchError as exc:
        raise OptionsError(f"study: {task}/{model} with {task_options}: {exc}") from None


def _int(value: Any) -> int | None:
    return None if value is None or value != value else int(value)


def _final_rows(runs: pd.DataFrame) -> dict[tuple[str, int], dict[str, Any]]:
    """(config_hash, seed) -> the latest stored row whose status is a result."""
    if runs.empty:
        return {}
    df = runs[runs["status"].isin(FINAL)]
    if "kind" in df:
        df = df[df["kind"].fillna("run") == "run"]
    df = df.sort_values("run_id")
    return {(r["config_hash"], int(r["seed"])): r for r in df.to_dict("records")}


def choose_lr(rows: dict[float, dict[str, Any] | None]) -> float:
    """The rate with the best validation accuracy; within 0.01 of the best, the one that solved in fewer
    steps, then the lower validation loss, then the smaller rate. Never the test set."""

    def val(row: dict[str, Any] | None, key: str, missing: float) -> float:
        v = None if row is None else row.get(key)
        return missing if v is None or v != v else float(v)

    best = max(val(r, "val_accuracy", -1.0) for r in rows.values())
    near = [lr for lr, r in rows.items() if val(r, "val_accuracy", -1.0) >= best - 0.01]
    return min(
        near,
        key=lambda lr: (
            val(rows[lr], "steps_to_solve", math.inf) if rows[lr] and rows[lr].get("solved") else math.inf,
            val(rows[lr], "val_loss", math.inf),
            lr,
        ),
    )


def order_by_cost(configs: list[RunConfig], runs: pd.DataFrame) -> list[RunConfig]:
    """The slowest runs first (by the wall time stored in `runs` for the same task and model; unknown ones
    first), so that the study's last minutes are not one long run on one worker while the other waits."""
    cost: dict[tuple[str, str], float] = {}
    if not runs.empty:
        cost = runs.groupby(["task", "model"])["wall_time_s"].mean().to_dict()
    return sorted(configs, key=lambda c: -cost.get((c.task, c.model), math.inf))


def write_definition(spec: StudySpec) -> Path:
    """`<results>/studies/<name>.json`: the study's definition beside its runs."""
    from seqbench.store import write_atomic

    path = Path(spec.results) / STUDIES / f"{spec.name}.json"
    exclude = {k for k, default in (("state", None), ("version", 1)) if getattr(spec, k) == default}
    text = spec.model_dump_json(indent=2, exclude=exclude or None) + "\n"
    if not path.exists() or path.read_text() != text:
        write_atomic(path, lambda fh: fh.write(text.encode()))
    return path


def stored_studies(results: str | Path) -> list[StudySpec]:
    """The studies whose definitions are stored under `results` (each bound to that directory)."""
    folder = Path(results) / STUDIES
    out = []
    paths = (
        sorted(folder.glob("*.json"), key=lambda p: (p.stem.endswith("-quick"), p.stem))
        if folder.is_dir()
        else []
    )
    for path in paths:  # a study before its quick variant
        try:
            spec = StudySpec.model_validate_json(path.read_text())
        except (pydantic.ValidationError, SeqbenchError) as exc:
            raise OptionsError(f"{path}: not a study definition this seqbench can read: {exc}") from None
        out.append(spec.model_copy(update={"results": str(results)}))
    return out


# Tables


def horizon_table(spec: StudySpec, pairs: list[Pair]) -> tuple[list[str], list[list[str]]]:
    """Models x tasks: each cell the horizon (the knob's value at the last rung solved) with the seeds that
    solved that rung; `…` while the climb goes on, `-` where the easiest rung was not solved."""
    by = {(p.task, p.model): p for p in pairs}
    columns = ["model", "params", "state", *[f"{t} ({spec.tasks[t].knob})" for t in spec.tasks]]
    cells = []
    for model in spec.models:
        first = next((by[(t, model)] for t in spec.tasks if by[(t, model)].params), None)
        row = [
            model,
            _fmt_int(first.params if first else None),
            _fmt_int(first.state_size if first else None),
        ]
        for task in spec.tasks:
            row.append(horizon_cell(by[(task, model)]))
        cells.append(row)
    return columns, cells


def horizon_cell(pair: Pair) -> str:
    if pair.error:
        return "n/a"
    horizon = pair.horizon
    if horizon is None:
        return "…"
    solved = [r for r in pair.rungs if r.complete and r.solved]
    if not solved:
        tried = pair.rungs[0] if pair.rungs else None
        seeds = f" ({tried.seeds_solved}/{len(tried.rows)})" if tried and tried.rows else ""
        return f"0{seeds}"
    last = solved[-1]
    top = "" if pair.finished else " …"
    cap = CAPPED if pair.capped else ""
    return f"{horizon} ({last.seeds_solved}/{len(last.rows)}){cap}{top}"


CAPPED = "^"  # after a horizon: the next rung could not be sized to the budget
CAPPED_NOTE = (
    f"{CAPPED}: the climb stopped there because the next rung cannot be sized to the budget (at equal state, "
    "an attention model's cache at that rung's length alone is larger than it)."
)


def _fmt_int(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def progress_line(pairs: list[Pair]) -> str:
    done = sum(p.finished for p in pairs)
    return f"{done}/{len(pairs)} (task, model) climbs finished"


def run_ids(pairs: list[Pair]) -> set[str]:
    """The run_ids of every row a study's decisions read."""
    ids: set[str] = set()
    for p in pairs:
        ids.update(r["run_id"] for r in p.lr_rows.values() if r)
        for rung in p.rungs:
            ids.update(r["run_id"] for r in rung.rows)
    return ids


def wall_time(runs: pd.DataFrame, pairs: list[Pair]) -> float:
    """Seconds of run wall time in a study's rows, summed over runs (divide by the workers for the
    elapsed time)."""
    if runs.empty:
        return 0.0
    return float(runs[runs["run_id"].isin(run_ids(pairs))]["wall_time_s"].sum())


# The quick variant against the whole study


def rank_key(pair: Pair) -> tuple[int, float]:
    """How far a model got: the rungs it solved, then its accuracy on the first rung it did not solve
    (1.0 past the top), so that two models with the same horizon still order."""
    solved = sum(1 for r in pair.rungs if r.complete and r.solved)
    failed = next((r for r in pair.rungs if r.complete and not r.solved), None)
    return solved, (failed.accuracy if failed is not None else 1.0)


def agreement(full: list[Pair], quick: list[Pair]) -> list[dict[str, Any]]:
    """Per task, over the models both finished: how many pairs of models the quick variant orders as the
    whole study does (by `rank_key`; a tie in one and not the other disagrees), and how many horizons are
    equal."""
    q = {(p.task, p.model): p for p in quick if p.finished and not p.error}
    out = []
    for task in dict.fromkeys(p.task for p in full):
        both = [
            (p, q[(task, p.model)]) for p in full if p.task == task and p.finished and (task, p.model) in q
        ]
        both = [(f, k) for f, k in both if not f.error]
        alike = total = 0
        for i in range(len(both)):
            for j in range(i + 1, len(both)):
                (fi, qi), (fj, qj) = both[i], both[j]
                a, b = rank_key(fi), rank_key(fj)
                c, d = rank_key(qi), rank_key(qj)
                total += 1
                alike += (a > b) - (a < b) == (c > d) - (c < d)
        out.append(
            {
                "task": task,
                "models": len(both),
                "pairs_alike": alike,
                "pairs": total,
                "horizons_equal": sum(f.horizon == k.horizon for f, k in both),
            }
        )
    return out
