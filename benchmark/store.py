"""The Parquet store: one file per run, written atomically, read back as one table.

    results/runs/<run_id>.parquet      one result row
    results/curves/<run_id>.parquet    its learning curve (long format)
    results/bench/<bench_id>.parquet   the rows of one `seqbench bench` (kind = bench)
    results/probes/<probe_id>.parquet  one `seqbench probe`: gradient norm per step, at init and trained

A file is written under a temporary name that no `*.parquet` glob matches and that Arrow's dataset reader
skips (`.tmp-<id>.partial`), flushed to disk, then renamed into place: readers see a whole file or none, two
writers never touch the same file, and a crash leaves at most a stray `.partial`. Every file is written with
the one schema below, so `pandas.read_parquet("results/runs")` reads every run as one table.

Column names are forever: renaming one breaks every stored leaderboard. Add columns; never rename.
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

RUNS, CURVES, BENCH, PROBES = "runs", "curves", "bench", "probes"
COMPACT_PREFIX = "compact-"  # files written by `seqbench compact` (seqbench.compact), many rows each

RUN_SCHEMA = pa.schema(
    [
        # identity
        ("run_id", pa.string()),
        ("kind", pa.string()),  # "run" (bench rows come later with the same store)
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("seqbench_version", pa.string()),
        ("git_sha", pa.string()),
        ("config_hash", pa.string()),
        # what ran
        ("task", pa.string()),
        ("task_options", pa.string()),  # JSON
        ("task_provider", pa.string()),  # package==version
        ("model", pa.string()),
        ("model_options", pa.string()),  # JSON
        ("model_provider", pa.string()),
        ("seed", pa.int64()),
        ("preset", pa.string()),
        ("train_config", pa.string()),  # JSON: optimiser, lr, clipping, batch size, ...
        ("device", pa.string()),
        ("device_name", pa.string()),
        ("dtype", pa.string()),
        ("torch_version", pa.string()),
        ("python_version", pa.string()),
        ("platform", pa.string()),
        (
            "kernels",
            pa.string(),
        ),  # loop implementations that ran, e.g. "lstm_cell=cpp-avx2" (metrics.kernels)
        ("threads", pa.int64()),
        # size
        ("hidden_size", pa.int64()),
        ("params", pa.int64()),
        ("state_size", pa.int64()),  # floats carried between steps or held in memory, per sequence, at the
        # longest training length (a growing state counted in full there; see state_per_step)
        # training
        ("steps", pa.int64()),
        ("samples_seen", pa.int64()),
        ("tokens_seen", pa.int64()),
        ("train_time_s", pa.float64()),  # time in training steps only (no evaluation)
        ("data_time_s", pa.float64()),  # of which generating the batches
        ("eval_time_s", pa.float64()),  # time in evaluations (during training and the final one)
        ("wall_time_s", pa.float64()),
        ("status", pa.string()),  # ok | diverged | oom | error | interrupted
        ("error", pa.string()),
        # speed
        ("train_tokens_per_s", pa.float64()),
        ("infer_tokens_per_s", pa.float64()),
        # memory
        ("peak_memory_bytes", pa.int64()),
        ("memory_kind", pa.string()),  # cuda | cpu
        # quality
        ("accuracy", pa.float64()),  # primary accuracy at the training length
        ("loss", pa.float64()),
        ("metrics", pa.string()),  # JSON: the task's own metrics at the training length
        ("accuracy_by_length", pa.string()),  # JSON: {"10": 1.0, "20": 0.98, ...}
        ("chance_accuracy", pa.float64()),
        ("train_length", pa.int64()),
        ("solved", pa.bool_()),
        ("steps_to_solve", pa.int64()),
        ("samples_to_solve", pa.int64()),
        ("time_to_solve_s", pa.float64()),
        # added after the first release of the schema (older files read back with nulls here)
        ("target_params", pa.int64()),  # the parameter count the width was sized to (--params), if any
        (
            "state_per_step",
            pa.int64(),
        ),  # floats a growing state (attention history) adds per step; 0 if fixed
        ("task_version", pa.int64()),  # the task class's `version` (null: stored before versions, i.e. 1)
        ("model_version", pa.int64()),
    ]
)

CURVE_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("step", pa.int64()),
        ("samples_seen", pa.int64()),
        ("train_time_s", pa.float64()),
        ("split", pa.string()),  # "train" (running mean since the last point) or "eval"
        ("length", pa.int64()),  # evaluation length; null for train
        ("metric", pa.string()),
        ("value", pa.float64()),
    ]
)

BENCH_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),  # "bench"
        ("bench_id", pa.string()),
        ("created_at", pa.string()),
        ("seqbench_version", pa.string()),
        ("git_sha", pa.string()),
        ("model", pa.string()),  # a registered model, or nn.LSTM (the reference), nn.GRU, nn.RNN
        ("model_options", pa.string()),  # JSON
        ("device", pa.string()),
        ("device_name", pa.string()),
        ("threads", pa.int64()),
        ("torch_version", pa.string()),
        ("python_version", pa.string()),
        ("platform", pa.string()),
        (
            "kernels",
            pa.string(),
        ),  # loop implementations that ran, e.g. "lstm_cell=cpp-avx2" (metrics.kernels)
        ("hidden_size", pa.int64()),
        ("length", pa.int64()),
        ("batch_size", pa.int64()),
        ("input_size", pa.int64()),
        ("rounds", pa.int64()),
        ("status", pa.string()),  # ok | error
        ("error", pa.string()),
        ("params", pa.int64()),
        ("state_size", pa.int64()),
        ("train_step_s", pa.float64()),  # median forward + backward
        ("train_tokens_per_s", pa.float64()),
        ("infer_step_s", pa.float64()),
        ("infer_tokens_per_s", pa.float64()),
        ("peak_memory_bytes", pa.int64()),
        ("memory_kind", pa.string()),
        ("flops", pa.int64()),  # per training step (forward + backward)
        ("flops_per_s", pa.float64()),
        ("matmul_flops_per_s", pa.float64()),  # a large matrix product on the same device, same run
        ("flops_fraction", pa.float64()),  # flops_per_s / matmul_flops_per_s
        ("ratio_train", pa.float64()),  # to nn.LSTM of the same hidden size and length, same rounds
        ("ratio_infer", pa.float64()),
        ("ratio_memory", pa.float64()),
        ("family_reference", pa.string()),  # nn.GRU / nn.RNN for the GRU and RNN families
        ("ratio_family", pa.float64()),  # train time against family_reference, same rounds
        ("time_exponent", pa.float64()),  # train_step_s ∝ length^exponent over the bench's lengths
        ("memory_exponent", pa.float64()),
    ]
)

PROBE_SCHEMA = pa.schema(
    [
        ("probe_id", pa.string()),
        ("created_at", pa.string()),
        ("task", pa.string()),
        ("task_options", pa.string()),
        ("model", pa.string()),
        ("model_options", pa.string()),
        ("hidden_size", pa.int64()),
        ("seed", pa.int64()),
        ("stage", pa.string()),  # init | trained
        ("steps_trained", pa.int64()),
        ("length", pa.int64()),
        ("step", pa.int64()),
        ("distance", pa.int64()),  # steps before the last scored position
        ("grad_norm", pa.float64()),  # mean over sequences of ||dL_final / dx_step||
        ("relative", pa.float64()),  # grad_norm / grad_norm at distance 0
    ]
)


def new_run_id() -> str:
    """Sortable by time, unique across processes and machines."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:10]}"


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write a file through `write(fh)` under a hidden temporary name, flush it to disk, then rename it into
    place: a reader sees the whole file or none, and a crash leaves at most a stray `.partial`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}.partial"
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _write_atomic(table: pa.Table, path: Path) -> None:
    write_atomic(path, lambda fh: pq.write_table(table, fh))


def write_run(
    results_dir: str | Path, row: dict[str, Any], curve: list[dict[str, Any]] | None = None
) -> Path:
    """Store one run (and its curve). The curve goes first: a row never points at a missing curve."""
    results_dir = Path(results_dir)
    run_id = row["run_id"]
    if curve:
        _write_atomic(
            pa.Table.from_pylist(curve, schema=CURVE_SCHEMA), results_dir / CURVES / f"{run_id}.parquet"
        )
    missing = set(RUN_SCHEMA.names) - set(row)
    extra = set(row) - set(RUN_SCHEMA.names)
    if missing or extra:
        raise ValueError(
            f"Result row does not match the schema: missing {sorted(missing)}, extra {sorted(extra)}"
        )
    path = results_dir / RUNS / f"{run_id}.parquet"
    _write_atomic(pa.Table.from_pylist([row], schema=RUN_SCHEMA), path)
    return path


class StoreWarning(UserWarning):
    """A file in the store that is not one of seqbench's (garbage, truncated, another program's table)."""


def _fits(file_schema: pa.Schema, schema: pa.Schema) -> str | None:
    """Why a file's schema is not (an older version of) `schema`, or None when it is: every column it has
    is one of the schema's, with the same type (a column added later may be missing)."""
    if schema.names[0] not in file_schema.names:
        return f"no {schema.names[0]!r} column"
    for f in file_schema:
        if f.name not in schema.names:
            return f"unknown column {f.name!r}"
        want = schema.field(f.name).type
        if f.type != want and not pa.types.is_null(f.type):
            return f"column {f.name!r} is {f.type}, not {want}"
    return None


def store_files(folder: Path, schema: pa.Schema) -> list[Path]:
    """The readable files of one store folder that hold `schema`'s table; every other `*.parquet` is
    skipped with a StoreWarning naming it (a garbage, empty or truncated file, or a foreign Parquet such as
    an exported leaderboard), so one bad file never hides the others."""
    good = []
    for path in sorted(folder.glob("*.parquet")):
        try:
            why = _fits(pq.read_schema(path), schema)
        except FileNotFoundError:
            raise  # replaced by a compaction since the listing: the caller lists again
        except (pa.ArrowException, OSError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        if why is None:
            good.append(path)
        else:
            warnings.warn(f"skipped {path}: not a seqbench {folder.name} file ({why})", StoreWarning, 2)
    return good


#: Columns that identify a stored row: after `seqbench compact` crashed between writing a merged file and
#: removing its sources, a row is on disk twice; readers keep one (see seqbench.compact).
#: (None: the whole row.) Bench and probe files are never compacted.
IDENTITY: dict[str, list[str] | None] = {"runs": ["run_id"], "curves": None}


def _read(results_dir: str | Path, sub: str, schema: pa.Schema):
    folder = Path(results_dir) / sub
    if not folder.is_dir():
        return schema.empty_table().to_pandas()
    for attempt in range(100):  # compactions are rare: a retry or two at most, in practice
        time.sleep(0.01 * min(attempt, 10))
        try:
            listed = store_files(folder, schema)
            # An explicit schema: files written before a column was added read back with nulls in it.
            table = ds.dataset([str(p) for p in listed], schema=schema, format="parquet").to_table()
        except FileNotFoundError:
            # `seqbench compact` removed a file after merging it: list again, the merged file holds its rows.
            continue
        # A directory listing is no snapshot: a compaction that renamed its merged file in and removed the
        # sources while we listed could hide both from us. A merged file we did not list means: list again.
        if not set(folder.glob(f"{COMPACT_PREFIX}*.parquet")) - set(listed):
            break
    else:
        raise OSError(f"{folder} kept changing under the reader (100 tries): is a compaction looping?")
    frame = table.to_pandas()
    if sub not in IDENTITY:
        return frame
    return frame.drop_duplicates(subset=IDENTITY[sub], ignore_index=True)


def check_writable(results_dir: str | Path) -> None:
    """Raise StoreError (exit 2) unless runs can be stored under `results_dir`: checked before a run
    trains, so a read-only or mistyped store costs seconds, not the run."""
    from seqbench.errors import StoreError

    folder = Path(results_dir) / RUNS
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".tmp-{uuid.uuid4().hex}.partial"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StoreError(
            f"Cannot store results under {results_dir}/: {exc.strerror or exc}. Choose a writable "
            "directory with --results DIR."
        ) from None


def refuse_inside_store(path: str | Path, results_dir: str | Path) -> None:
    """An export (a leaderboard) written into the store's own folders would be read back as runs."""
    from seqbench.errors import OptionsError

    target = Path(path).resolve()
    for sub in (RUNS, CURVES, BENCH, PROBES):
        if target.is_relative_to((Path(results_dir) / sub).resolve()):
            raise OptionsError(
                f"--out {path} is inside the store ({results_dir}/{sub}/), where it would be read back as "
                "results. Write it elsewhere, e.g. --out board.parquet."
            )


def read_runs(results_dir: str | Path = "results"):
    """Every stored run as one pandas DataFrame (empty, with the schema's columns, when there are none).

    Rows stored before options were resolved (no `model_version`) get their config_hash recomputed under
    today's rules (`config.legacy_config_hash`), so they group with new runs of the same configuration."""
    runs = _read(results_dir, RUNS, RUN_SCHEMA)
    legacy = runs["model_version"].isna()
    if legacy.any():
        from seqbench.config import legacy_config_hash
        from seqbench.errors import SeqbenchError

        def upgraded(row: dict[str, Any]) -> str:
            try:
                return legacy_config_hash(row)
            except (SeqbenchError, ValueError, TypeError, KeyError):  # provider gone, odd row: as stored
                return row["config_hash"]

        runs.loc[legacy, "config_hash"] = [upgraded(r) for r in runs[legacy].to_dict("records")]
    return runs


def read_curves(results_dir: str | Path = "results"):
    return _read(results_dir, CURVES, CURVE_SCHEMA)


def write_bench(results_dir: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Store one bench's rows as one file (atomically); columns a row lacks are stored as null."""
    extra = {k for row in rows for k in row} - set(BENCH_SCHEMA.names)
    if extra:
        raise ValueError(f"Bench row does not match the schema: extra {sorted(extra)}")
    path = Path(results_dir) / BENCH / f"{rows[0]['bench_id']}.parquet"
    _write_atomic(pa.Table.from_pylist(rows, schema=BENCH_SCHEMA), path)
    return path


def read_bench(results_dir: str | Path = "results"):
    return _read(results_dir, BENCH, BENCH_SCHEMA)


def write_table(frame: Any, path: str | Path) -> Path:
    """Write a DataFrame (a leaderboard) as one Parquet file, atomically."""
    path = Path(path)
    _write_atomic(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


def write_probe(results_dir: str | Path, rows: list[dict[str, Any]]) -> Path:
    path = Path(results_dir) / PROBES / f"{rows[0]['probe_id']}.parquet"
    _write_atomic(pa.Table.from_pylist(rows, schema=PROBE_SCHEMA), path)
    return path


def read_probes(results_dir: str | Path = "results"):
    return _read(results_dir, PROBES, PROBE_SCHEMA)
