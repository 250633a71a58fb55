"""The Parquet store: one file per run, written atomically, read back as one table.

    results/runs/<run_id>.parquet      one result row
    results/curves/<run_id>.parquet    its learning curve (long format)
    results/bench/<bench_id>.parquet   the rows of one `seqbench bench` (kind = bench)
    results/probes/<probe_id>.parquet  one `seqbench probe`: gradient norm per step, at init and trained

A file is written under a temporary name that no `*.parquet` glob matches and that Arrow's dataset reader
skips (`.tmp-<id>.partial`), flushed to disk, then renamed into place: readers see a whole file or none, two
writers never touch the same file, and a crash leaves at most a stray `.partial`. Every file is written with
its table's one schema, derived from the declarations in `seqbench.columns`, so
`pandas.read_parquet("results/runs")` reads every run as one table.
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

from seqbench.columns import BENCH_COLUMNS, CURVE_COLUMNS, PROBE_COLUMNS, RUN_COLUMNS, Column

RUNS, CURVES, BENCH, PROBES = "runs", "curves", "bench", "probes"
COMPACT_PREFIX = "compact-"  # files written by `seqbench compact` (seqbench.compact), many rows each

_ARROW = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def arrow_schema(columns: list[Column]) -> pa.Schema:
    """The Parquet schema of a table declared in `seqbench.columns`."""
    return pa.schema([(c.name, _ARROW[c.type]) for c in columns])


RUN_SCHEMA = arrow_schema(RUN_COLUMNS)
CURVE_SCHEMA = arrow_schema(CURVE_COLUMNS)
BENCH_SCHEMA = arrow_schema(BENCH_COLUMNS)
PROBE_SCHEMA = arrow_schema(PROBE_COLUMNS)


def new_run_id() -> str:
    """The one id generator (runs, benches, probes): sortable by time, unique across processes and
    machines."""
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


NEWER = "newer"  # what _fits says of a file written by a newer seqbench


def _fits(file_schema: pa.Schema, schema: pa.Schema) -> str | None:
    """Why a file's schema is not (an older version of) `schema`, or None when it is: every column it has
    is one of the schema's, with the same type (a column added later may be missing). NEWER when it is a
    newer seqbench's file: a stored column is never removed or retyped, so a newer version's file has every
    column of ours, with our types, and more."""
    if schema.names[0] not in file_schema.names:
        return f"no {schema.names[0]!r} column"
    for f in file_schema:
        if f.name not in schema.names:
            continue
        want = schema.field(f.name).type
        if f.type != want and not pa.types.is_null(f.type):
            return f"column {f.name!r} is {f.type}, not {want}"
    unknown = [name for name in file_schema.names if name not in schema.names]
    if not unknown:
        return None
    if set(schema.names) <= set(file_schema.names):
        return NEWER
    return f"unknown column {unknown[0]!r}"


# What this process has read of the store, by path. A stored file is written once (renamed into place) and
# never changed in place: one whose inode, size and modification time are those seen before is the same file,
# so a long study, which reads the store whenever a run ends, reads only the files stored since its last look.
_Identity = tuple[int, int, int]
_VERDICTS: dict[str, tuple[_Identity, pa.Schema, str | None, frozenset[str]]] = {}
_TABLES: dict[str, tuple[_Identity, pa.Schema, pa.Table]] = {}


def _identity(path: Path) -> _Identity:
    st = path.stat()
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _verdict(path: Path, schema: pa.Schema) -> tuple[str | None, frozenset[str]]:
    """`_fits` of the file's schema (a reason or an Arrow error's text for a file that is not ours), and the
    columns it has that `schema` lacks; remembered while the file is unchanged."""
    ident = _identity(path)
    seen = _VERDICTS.get(str(path))
    if seen is not None and seen[0] == ident and seen[1].equals(schema):
        return seen[2], seen[3]
    try:
        file_schema = pq.read_schema(path)
        why, unknown = _fits(file_schema, schema), frozenset(file_schema.names) - set(schema.names)
    except FileNotFoundError:
        raise  # replaced by a compaction since the listing: the caller lists again
    except (pa.ArrowException, OSError) as exc:
        why, unknown = f"{type(exc).__name__}: {exc}", frozenset()
    _VERDICTS[str(path)] = (ident, schema, why, unknown)
    return why, unknown


def _read_files(paths: list[Path], schema: pa.Schema) -> pa.Table:
    """The files' rows as one table with `schema` (columns a file lacks read as nulls); files read before
    and unchanged since come from memory."""
    tables, fresh = {}, []
    for path in paths:
        seen = _TABLES.get(str(path))
        if seen is not None and seen[0] == _identity(path) and seen[1].equals(schema):
            tables[str(path)] = seen[2]
        else:
            fresh.append(path)
    if fresh:
        idents = {str(p): _identity(p) for p in fresh}
        batches: dict[str, list[pa.RecordBatch]] = {str(p): [] for p in fresh}
        # One scan of every new file (as fast as reading them as one table), its batches told apart by file.
        for tagged in ds.dataset(list(batches), schema=schema, format="parquet").scanner().scan_batches():
            batches[tagged.fragment.path].append(tagged.record_batch)
        for key, parts in batches.items():
            table = pa.Table.from_batches(parts, schema=schema)
            _TABLES[key] = (idents[key], schema, table)
            tables[key] = table
    folders = {p.parent for p in paths}
    for key in [k for k in _TABLES if Path(k).parent in folders and k not in tables]:
        del _TABLES[key]  # gone from the store (a compaction merged it)
    if not tables:
        return schema.empty_table()
    return pa.concat_tables([tables[str(p)] for p in paths]).combine_chunks()


def store_files(folder: Path, schema: pa.Schema, newer: bool = True) -> list[Path]:
    """The readable files of one store folder that hold `schema`'s table; every other `*.parquet` is
    skipped with a StoreWarning naming it (a garbage, empty or truncated file, or a foreign Parquet such as
    an exported leaderboard), so one bad file never hides the others.

    A newer seqbench's files (our columns and more) are listed, read without the columns this version does
    not know, with one StoreWarning for the folder; `newer=False` leaves them out (a compaction, which would
    drop those columns, never merges them)."""
    good, ahead, extra = [], [], set()
    for path in sorted(folder.glob("*.parquet")):
        why, unknown = _verdict(path, schema)  # FileNotFoundError: compacted away, the caller lists again
        if why is None:
            good.append(path)
        elif why == NEWER:
            ahead.append(path)
            extra |= unknown
        else:
            warnings.warn(f"skipped {path}: not a seqbench {folder.name} file ({why})", StoreWarning, 2)
    if ahead:
        what = "read without" if newer else "left as they are, not merged, to keep"
        warnings.warn(
            f"{len(ahead)} file(s) in {folder} were written by a newer seqbench: {what} the column(s) this "
            f"version does not know ({', '.join(sorted(extra))}). Upgrade seqbench to see them.",
            StoreWarning,
            2,
        )
        if newer:
            good = sorted(good + ahead)
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
            table = _read_files(listed, schema)
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

        keys = ["task", "model", "task_options", "model_options", "preset", "train_config", "target_params"]
        hashes: dict[tuple, str] = {}  # one recomputation per configuration, not per seed

        def upgraded(row: dict[str, Any]) -> str:
            key = tuple(str(row[k]) for k in keys)
            if key not in hashes:
                try:
                    hashes[key] = legacy_config_hash(row)
                except (SeqbenchError, ValueError, TypeError, KeyError):  # provider gone, odd row
                    return row["config_hash"]
            return hashes[key]

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
