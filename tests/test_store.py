from __future__ import annotations

import multiprocessing as mp
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from seqbench import store
from seqbench.store import RUN_SCHEMA, new_run_id, read_curves, read_runs, write_run


def make_row(**values) -> dict:
    row = dict.fromkeys(RUN_SCHEMA.names)
    row.update(
        run_id=new_run_id(),
        kind="run",
        created_at=datetime.now(timezone.utc),
        task="copy",
        model="lstm",
        config_hash="abc",
        seed=0,
        status="ok",
        accuracy=0.5,
    )
    row.update(values)
    return row


def test_rows_read_back_as_one_table_with_the_schema(tmp_path):
    write_run(tmp_path, make_row(seed=1, error=None))
    write_run(tmp_path, make_row(seed=2, status="error", error="boom"))  # a string where the first had null
    df = pd.read_parquet(tmp_path / "runs")  # the plain pandas call the README promises
    assert len(df) == 2 and set(df["seed"]) == {1, 2}
    assert list(read_runs(tmp_path).columns) == RUN_SCHEMA.names
    assert pq.read_schema(next((tmp_path / "runs").glob("*.parquet"))).equals(RUN_SCHEMA)


def test_empty_store_reads_as_empty_table(tmp_path):
    df = read_runs(tmp_path)
    assert df.empty and list(df.columns) == RUN_SCHEMA.names


def test_row_must_match_the_schema(tmp_path):
    row = make_row()
    row["acuracy"] = row.pop("accuracy")
    with pytest.raises(ValueError, match=r"missing \['accuracy'\].*extra \['acuracy'\]"):
        write_run(tmp_path, row)


def test_curves_are_stored_beside_the_run(tmp_path):
    row = make_row()
    point = {
        "run_id": row["run_id"],
        "step": 10,
        "samples_seen": 80,
        "train_time_s": 1.0,
        "split": "eval",
        "length": 20,
        "metric": "accuracy",
        "value": 0.25,
    }
    write_run(tmp_path, row, [point, {**point, "length": 50, "value": 0.0}])
    curves = read_curves(tmp_path)
    assert len(curves) == 2 and set(curves["run_id"]) == {row["run_id"]}


def test_a_crash_mid_write_leaves_stored_rows_and_no_partial_file(tmp_path, monkeypatch):
    write_run(tmp_path, make_row(seed=1))

    def crash(table, where, **kw):
        Path(where.name).write_bytes(b"PAR1 half a file")  # something lands on disk, then the process dies
        raise OSError("disk full")

    monkeypatch.setattr(store.pq, "write_table", crash)
    with pytest.raises(OSError):
        write_run(tmp_path, make_row(seed=2))
    monkeypatch.undo()
    assert list(read_runs(tmp_path)["seed"]) == [1]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        p.name for p in (tmp_path / "runs").glob("*.parquet")
    ]


def test_partial_files_are_invisible_to_parquet_globs_and_readers(tmp_path):
    write_run(tmp_path, make_row())
    (tmp_path / "runs" / ".tmp-deadbeef.partial").write_bytes(b"not parquet at all")
    assert len(list((tmp_path / "runs").glob("*.parquet"))) == 1
    assert len(pd.read_parquet(tmp_path / "runs")) == 1


def _writer(results: str, worker: int, n: int) -> None:
    for i in range(n):
        write_run(results, make_row(seed=worker * 1000 + i))


def test_concurrent_writers_lose_nothing(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 15)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    df = read_runs(tmp_path)
    assert len(df) == 60 and df["seed"].nunique() == 60


def test_a_reader_that_has_read_the_store_reads_only_new_files_and_sees_every_change(tmp_path, monkeypatch):
    first = make_row(seed=1)
    write_run(tmp_path, first)
    assert list(read_runs(tmp_path)["seed"]) == [1]
    scanned: list[int] = []
    real = store.ds.dataset

    def counting(paths, **kwargs):
        scanned.append(len(paths))
        return real(paths, **kwargs)

    monkeypatch.setattr(store.ds, "dataset", counting)
    write_run(tmp_path, make_row(seed=2))
    assert sorted(read_runs(tmp_path)["seed"]) == [1, 2]
    assert scanned == [1]  # the first file came from memory
    assert sorted(read_runs(tmp_path)["seed"]) == [1, 2] and scanned == [1]
    # A file replaced under the same name (a hand edit, a restored backup) is read again.
    path = tmp_path / "runs" / f"{first['run_id']}.parquet"
    replaced = make_row(run_id=first["run_id"], seed=7)
    path.unlink()
    write_run(tmp_path, replaced)
    assert sorted(read_runs(tmp_path)["seed"]) == [2, 7]
    # A file removed (merged by a compaction) is gone from what is read, and from memory.
    path.unlink()
    assert list(read_runs(tmp_path)["seed"]) == [2]
    assert not any(key.startswith(str(path)) for key in store._TABLES)
