"""Readers (pandas, Polars, DuckDB) keep working while a writer keeps replacing partitions.

A reader that opens each file once sees a whole old or a whole new file: DuckDB's glob reads, the
Store's own reads, and pandas/Polars given an open file. pyarrow's path-based dataset reader (what
`pd.read_parquet(path)` uses) and Polars' path reader read the footer and the pages through two
separate opens, so a replace in between can make them raise (never return mixed data); a retry
succeeds. The test holds every reader to that: consistent snapshots always, and transient errors
only from the re-opening readers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl

from okx_collector.models import Candle
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe

M1 = Timeframe.parse("1m")
START = int(datetime(2026, 2, 28, 23, 0, tzinfo=UTC).timestamp() * 1000)
SEED_ROWS = 2000
WRITES = 300


def test_readers_while_writing(tmp_path: Path) -> None:
    store = Store(tmp_path)
    seed = [
        Candle(START + i * M1.ms, 1.0, 2.0, 0.5, 1.5, 1.0, 1.0, "backfill")
        for i in range(SEED_ROWS)
    ]
    store.write_candles("BTC-USDT", M1, seed)
    store.compact()
    done = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(WRITES):
                ts = START + (SEED_ROWS + i) * M1.ms  # the month changes after 60 writes
                candle = Candle(ts, 1.0, 2.0, 0.5, 1.5, float(i), 1.0, "ws")
                store.write_candles("BTC-USDT", M1, [candle])
                if i % 5 == 4 or i == WRITES - 1:  # partitions replaced under the readers
                    store.compact()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    folder = tmp_path / "candles" / "BTC-USDT" / "1m"
    glob = str(tmp_path / "candles" / "*" / "*" / "*.parquet")

    def files() -> list[Path]:
        return sorted(folder.glob("*.parquet"))

    def pandas_open_once() -> list[int]:
        out: list[int] = []
        for path in files():
            with path.open("rb") as fh:
                out.extend(pd.read_parquet(fh)["ts"].tolist())
        return out

    def polars_open_once() -> list[int]:
        out: list[int] = []
        for path in files():
            with path.open("rb") as fh:
                out.extend(pl.read_parquet(fh)["ts"].to_list())
        return out

    def duckdb_glob() -> list[int]:
        con = duckdb.connect()
        try:
            query = f"select ts from '{glob}' order by ts"  # noqa: S608 - a test path, not input
            return [r[0] for r in con.sql(query).fetchall()]
        finally:
            con.close()

    steady: dict[str, Callable[[], list[int]]] = {
        "duckdb": duckdb_glob,
        "store": lambda: store.candle_timestamps("BTC-USDT", M1).tolist(),
        "pandas(file)": pandas_open_once,
        "polars(file)": polars_open_once,
    }
    reopening: dict[str, Callable[[], list[int]]] = {
        "pandas(dir)": lambda: sorted(pd.read_parquet(folder)["ts"].tolist()),
        "polars(glob)": lambda: sorted(pl.read_parquet(glob)["ts"].to_list()),
    }
    sizes: dict[str, list[int]] = {name: [] for name in [*steady, *reopening]}
    transient: dict[str, int] = dict.fromkeys(reopening, 0)

    def check(name: str, ts: list[int]) -> None:
        # Whole files only: contiguous, unique, and never fewer rows than an earlier read.
        assert ts == list(range(START, START + len(ts) * M1.ms, M1.ms)), name
        sizes[name].append(len(ts))

    def read_all() -> None:
        for name, read in steady.items():
            check(name, read())
        for name, read in reopening.items():
            for _ in range(20):
                try:
                    ts = read()
                # polars can also panic (a BaseException) when a file is replaced under it.
                except (OSError, pl.exceptions.ComputeError, pl.exceptions.PanicException):
                    transient[name] += 1
                    continue
                check(name, ts)
                break

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while not done.is_set():
            read_all()
    finally:
        thread.join()
    assert not errors
    read_all()
    for name, seen in sizes.items():
        assert len(seen) >= 2, name
        assert seen == sorted(seen), name
        assert seen[-1] == SEED_ROWS + WRITES, name
    assert not list(tmp_path.rglob("*.tmp-*"))
