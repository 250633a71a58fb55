"""`seqbench compact`: merge a store's one-run files into larger Parquet files, and sweep up stale partials.

    seqbench compact --results results

Thousands of one-row files read slowly (10,000 took 10 s with pandas); one merged file reads in a fraction
of that. Compaction is safe while runs are being stored and while others read, and after a crash at any
point, because of these invariants (per folder, `runs/` and `curves/`):

1. Only the files listed at the start are merged, and only they are removed. A run stored meanwhile is a new
   file that the listing did not see: it stays, for the next compaction. A writer never loses anything.
2. A source is removed only after the merged file holding all its rows is in place (written under a
   `.partial` name, flushed to disk, renamed; `store.write_atomic`). A crash before the rename leaves the
   sources untouched (and at most a stale `.partial`); a crash after it leaves the sources and the merged
   file both on disk.
3. Readers drop rows seen twice (runs by `run_id`, curve points by their whole row; `store.IDENTITY`), so a
   row on disk twice (invariant 2's crash window) reads once; a reader that finds a listed file gone (removed
   by a compaction after its listing), or a merged file it did not list (a directory listing is no
   snapshot: a compaction during it could hide a source and its merged file both), lists again. A reader
   never sees a run twice or not at all.
4. The next compaction merges the previous merged files too, dropping duplicates: the store converges to one
   file per folder. One compaction at a time per store (a lock file); a second one says so and stops.
5. A `.tmp-*.partial` file older than `stale_after` seconds is a killed writer's leftover (a live writer
   renames its partial within seconds) and is removed. Unreadable or foreign `*.parquet` files are left in
   place and reported (readers skip them with a warning).
"""

from __future__ import annotations

import fcntl
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from seqbench.errors import SeqbenchError
from seqbench.store import (
    COMPACT_PREFIX,
    CURVE_SCHEMA,
    CURVES,
    IDENTITY,
    RUN_SCHEMA,
    RUNS,
    store_files,
    write_atomic,
)

LOCK = ".compact.lock"


class CompactionBusy(SeqbenchError):
    exit_code = 1


@dataclass
class FolderResult:
    folder: str
    merged_files: int = 0
    rows: int = 0
    output: str | None = None
    stale_partials: int = 0


@dataclass
class CompactResult:
    folders: list[FolderResult] = field(default_factory=list)


def _merge(folder: Path, schema: pa.Schema, key: list[str] | None) -> FolderResult:
    result = FolderResult(folder.name)
    sources = store_files(folder, schema, newer=False) if folder.is_dir() else []
    if len(sources) < 2:  # nothing to gain (one file is already as compact as it gets)
        return result
    # Only a compaction removes store files, and it holds the lock: every listed source is still there.
    merged = pa.concat_tables([pq.read_table(path, schema=schema) for path in sources])
    frame = merged.to_pandas().drop_duplicates(subset=key, ignore_index=True)
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    name = f"{COMPACT_PREFIX}{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:10]}.parquet"
    out = write_atomic(folder / name, lambda fh: pq.write_table(table, fh))  # invariant 2: in place first
    remove_sources(sources, keep=out)  # then the sources
    result.merged_files, result.rows, result.output = len(sources), table.num_rows, str(out)
    return result


def remove_sources(sources: list[Path], keep: Path) -> None:
    """Remove merged sources (a separate step so that tests can crash compaction right here)."""
    for path in sources:
        if path != keep:
            path.unlink(missing_ok=True)


def remove_stale_partials(folder: Path, stale_after: float) -> int:
    removed = 0
    now = time.time()
    for path in folder.glob(".tmp-*.partial") if folder.is_dir() else []:
        try:
            if now - path.stat().st_mtime > stale_after:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # its writer renamed it into place meanwhile
            pass
    return removed


def compact(results_dir: str | Path = "results", stale_after: float = 3600.0) -> CompactResult:
    """Merge `runs/` and `curves/` of a store into one file each and remove partials older than
    `stale_after` seconds (in every store folder). Raises CompactionBusy if another compaction holds the
    store's lock."""
    root = Path(results_dir)
    if not root.is_dir():
        raise SeqbenchError(f"No store at {results_dir}/: nothing to compact.")
    result = CompactResult()
    with open(root / LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CompactionBusy(f"Another `seqbench compact` is running on {results_dir}/.") from None
        try:
            # Curves first: a run row never points at a curve that a crash left only half merged (each
            # folder is safe on its own anyway, by invariants 1-3).
            for sub, schema in ((CURVES, CURVE_SCHEMA), (RUNS, RUN_SCHEMA)):
                folder = root / sub
                stale = remove_stale_partials(folder, stale_after)
                merged = _merge(folder, schema, IDENTITY[sub])
                merged.stale_partials = stale
                result.folders.append(merged)
            for sub in ("bench", "probes"):
                n = remove_stale_partials(root / sub, stale_after)
                result.folders.append(FolderResult(sub, stale_partials=n))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return result
