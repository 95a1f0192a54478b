"""Benchmark reads of one series: a year of 1m, whole and one week of it.

    python benchmarks/read.py [--cache-dir /tmp/okx-collector-bench-read] [--repeat 7]

The store (BTC-USDT, 1m, 2025-01-01 .. 2025-12-31, ~0.5 % missing candles) is built once through
the Store and cached. Each reader runs `--repeat` times after one warm-up (the files are in the
page cache, as they are for a researcher re-running a notebook); the table gives the median and the
best wall time and the rows returned. The baselines read the same files: pandas (`read_parquet`
of the series folder, a week with `filters`), polars (`scan_parquet` + filter) and DuckDB (one
`select`), whichever are installed. Targets (issue "Read and export speed"): the API <= 50 ms for
the year and <= 10 ms for the week.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from okx_collector import read_candles
from okx_collector.store import Store
from okx_collector.timeframes import DAY_MS, Timeframe

sys.path.insert(0, str(Path(__file__).parent))
from export import candles  # the export benchmark's seeded walk with gaps

START = 1_735_689_600_000  # 2025-01-01 00:00 UTC
END = START + 365 * DAY_MS
WEEK = (START + 200 * DAY_MS, START + 207 * DAY_MS)
INST, TF = "BTC-USDT", Timeframe.parse("1m")


def build(data_dir: Path) -> None:
    marker = data_dir / ".complete"
    store = Store(data_dir)
    if marker.exists():
        store.recover()  # a cache of an older layout (day files) is migrated once, as a start would
    else:
        lo = START
        while lo < END:
            hi = min(END, lo + 31 * DAY_MS)
            store.write_candles(INST, TF, candles(INST, TF, lo, hi))
            lo = hi
    # The next month's first candle, as a collector that runs on has stored: the year is a past
    # one, 12 month files (a series' newest month is kept in day files, and December would be
    # 31 of them). Re-merging it into a cache rewrites nothing.
    store.write_candles(INST, TF, candles(INST, TF, END, END + TF.ms))
    store.compact()  # as a stopped backfill leaves it: partitions only
    marker.touch()


def readers(data_dir: Path) -> dict[str, Callable[[tuple[int, int] | None], int]]:
    folder = data_dir / "candles" / INST / TF.name
    found: dict[str, Callable[[tuple[int, int] | None], int]] = {}

    def api(window: tuple[int, int] | None) -> int:
        start, end = window if window else (None, None)
        return len(read_candles(data_dir, INST, TF.name, start, end))

    found["okx_collector.read_candles"] = api
    import pandas as pd

    def pandas(window: tuple[int, int] | None) -> int:
        filters = [("ts", ">=", window[0]), ("ts", "<", window[1])] if window else None
        return len(pd.read_parquet(folder, filters=filters))

    found["pandas.read_parquet(folder)"] = pandas
    try:
        import polars as pl
    except ImportError:
        pass
    else:

        def polars(window: tuple[int, int] | None) -> int:
            frame = pl.scan_parquet(f"{folder}/*.parquet")
            if window:
                frame = frame.filter((pl.col("ts") >= window[0]) & (pl.col("ts") < window[1]))
            return frame.collect().height

        found["polars.scan_parquet + filter"] = polars
    try:
        import duckdb
    except ImportError:
        pass
    else:

        def duck(window: tuple[int, int] | None) -> int:
            where = f" where ts >= {window[0]} and ts < {window[1]}" if window else ""
            query = f"select * from '{folder}/*.parquet'{where} order by ts"  # noqa: S608
            return len(duckdb.sql(query).df())

        found["duckdb select -> df"] = duck
    return found


def timed(read: Callable[[Any], int], window: tuple[int, int] | None, repeat: int) -> list[Any]:
    rows = read(window)  # warm-up: page cache, imports
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        read(window)
        seconds.append(time.perf_counter() - began)
    return [statistics.median(seconds), min(seconds), rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/okx-collector-bench-read"))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    began = time.perf_counter()
    build(args.cache_dir)
    files = sorted((args.cache_dir / "candles" / INST / TF.name).glob("*.parquet"))
    size = sum(f.stat().st_size for f in files) / 2**20
    print(f"store: {INST} {TF.name}, {len(files)} files, {size:.1f} MB "
          f"(ready in {time.perf_counter() - began:.1f} s)")  # fmt: skip
    print(f"{'reader':34} {'year median':>12} {'best':>8} {'rows':>8}   "
          f"{'week median':>12} {'best':>8} {'rows':>6}")  # fmt: skip
    figures = {}
    for name, read in readers(args.cache_dir).items():
        year = timed(read, None, args.repeat)
        week = timed(read, WEEK, args.repeat)
        figures[name] = (year, week)
        print(f"{name:34} {year[0] * 1e3:>9.1f} ms {year[1] * 1e3:>5.1f} ms {year[2]:>8,}   "
              f"{week[0] * 1e3:>9.1f} ms {week[1] * 1e3:>5.1f} ms {week[2]:>6,}")  # fmt: skip
    year, week = figures["okx_collector.read_candles"]
    ok = year[0] <= 0.050 and week[0] <= 0.010
    print(f"targets (API year <= 50 ms, week <= 10 ms): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
