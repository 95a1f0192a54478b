"""Benchmark reads of one series: a year of 1m, whole and one week of it, past and up to now.

    python benchmarks/read.py [--cache-dir /tmp/okx-collector-bench-read] [--repeat 7]

Two stores of BTC-USDT 1m (~0.5 % missing candles), each built once through the Store (written a
month at a time, then compacted, as a stopped backfill leaves it) and cached:

- `past`: 2025-01-01 .. 2025-12-31 and January 2026's first candle, so that 2025 is a past year
  (12 month files); read whole (unbounded) and one week of it;
- `now`: 2025-01-01 .. 2026-01-31 12:00 UTC, January 2026 backfilled to the 26th and the rest
  written a day at a time, each compacted (the most day files compaction leaves in a series'
  newest month); read "the last 365 days up to the newest candle" and the last week, the most
  common research reads;
- `live`: `now` and 16 closes in the journal, as a live run has them between compactions.

Each reader runs `--repeat` times after one warm-up (the files are in the page cache, as they are
for a researcher re-running a notebook); the table gives the median and the best wall time and
the rows returned. The baselines read the same files: pandas (`read_parquet` of the series folder,
a window with `filters`), polars (`scan_parquet` + filter) and DuckDB (one `select`), whichever
are installed. Targets (issue "Read and export speed"): the API <= 50 ms for a year and <= 10 ms
for a week, in both stores.
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
# The `now` store's newest candle opens at 2026-01-31 11:59: its month's 31st day has begun.
NOW = END + 30 * DAY_MS + DAY_MS // 2
NOW_YEAR = (NOW - 365 * DAY_MS, NOW)
NOW_WEEK = (NOW - 7 * DAY_MS, NOW)
LIVE_YEAR = (NOW_YEAR[0] + 16 * TF.ms, NOW_YEAR[1] + 16 * TF.ms)  # (to the `live` store's newest)
LIVE_WEEK = (NOW_WEEK[0] + 16 * TF.ms, NOW_WEEK[1] + 16 * TF.ms)
Window = tuple[int, int] | None


def build(data_dir: Path, end: int, live_from: int | None = None) -> None:
    """Write [START, live_from) a month (31 days) at a time and compact, as a stopped backfill
    leaves it, then [live_from, end) a day at a time, each compacted, as a collector's rounds
    leave it. A cached store is kept (an older layout's is migrated once, as a writing
    command's start does)."""
    marker = data_dir / ".complete"
    store = Store(data_dir)
    if marker.exists():
        store.recover()
    else:
        live = end if live_from is None else live_from
        lo = START
        while lo < live:
            hi = min(live, lo + 31 * DAY_MS)
            store.write_candles(INST, TF, candles(INST, TF, lo, hi))
            lo = hi
        store.compact()
        while lo < end:
            hi = min(end, lo + DAY_MS)
            store.write_candles(INST, TF, candles(INST, TF, lo, hi))
            store.compact()
            lo = hi
    store.compact()  # partitions only
    marker.touch()


def build_past(data_dir: Path) -> None:
    # The next month's first candle, as a collector that runs on has stored: 2025 is a past
    # year, 12 month files (a series' newest month is kept apart: docs/storage.md).
    build(data_dir, END + TF.ms)


def build_now(data_dir: Path) -> None:
    # January 2026 backfilled to the 26th, then 5.5 days live: the most finished day files of
    # the newest month compaction leaves (6, with the 31st's: it folds 7, `FOLD_DAYS`).
    build(data_dir, NOW, live_from=NOW - NOW % DAY_MS - 5 * DAY_MS)


def build_live(data_dir: Path) -> None:
    """The `now` store with 16 closes in the journal, not compacted: a live run just before
    its background compaction (each close's file also holds 4 rows of the hour before, so the
    journal's rows meet stored ones, as a catch-up's re-fetched rows do)."""
    marker = data_dir / ".journal"
    if marker.exists():
        return  # (not `build`: it would compact the journal)
    build_now(data_dir)
    store = Store(data_dir)
    hour = candles(INST, TF, NOW - 60 * TF.ms, NOW + 16 * TF.ms)
    for close in range(16):
        store.write_candles(INST, TF, [*hour[close * 4 : close * 4 + 4], hour[-16 + close]])
    marker.touch()


def readers(data_dir: Path) -> dict[str, Callable[[Window], int]]:
    folder = data_dir / "candles" / INST / TF.name
    found: dict[str, Callable[[Window], int]] = {}

    def api(window: Window) -> int:
        start, end = window if window else (None, None)
        return len(read_candles(data_dir, INST, TF.name, start, end))

    found["okx_collector.read_candles"] = api
    import pandas as pd

    def pandas(window: Window) -> int:
        filters = [("ts", ">=", window[0]), ("ts", "<", window[1])] if window else None
        return len(pd.read_parquet(folder, filters=filters))

    found["pandas.read_parquet(folder)"] = pandas
    try:
        import polars as pl
    except ImportError:
        pass
    else:

        def polars(window: Window) -> int:
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

        def duck(window: Window) -> int:
            where = f" where ts >= {window[0]} and ts < {window[1]}" if window else ""
            query = f"select * from '{folder}/*.parquet'{where} order by ts"  # noqa: S608
            return len(duckdb.sql(query).df())

        found["duckdb select -> df"] = duck
    return found


def timed(read: Callable[[Any], int], window: Window, repeat: int) -> list[Any]:
    rows = read(window)  # warm-up: page cache, imports
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        read(window)
        seconds.append(time.perf_counter() - began)
    return [statistics.median(seconds), min(seconds), rows]


def table(
    data_dir: Path, title: str, year: Window, week: Window, repeat: int
) -> tuple[list[Any], list[Any]]:
    """Print one store's table; returns the API's (year, week) figures."""
    files = sorted((data_dir / "candles" / INST / TF.name).glob("*.parquet"))
    months = sum(len(f.stem) == 7 for f in files)
    size = sum(f.stat().st_size for f in files) / 2**20
    journal = Store(data_dir).journal_pending()
    print(f"\n{title}: {INST} {TF.name}, {months} month files + {len(files) - months} day files, "
          f"{size:.1f} MB" + (f", {journal} journal files" if journal else ""))  # fmt: skip
    print(f"{'reader':34} {'year median':>12} {'best':>8} {'rows':>8}   "
          f"{'week median':>12} {'best':>8} {'rows':>6}")  # fmt: skip
    figures = {}
    for name, read in readers(data_dir).items():
        y = timed(read, year, repeat)
        w = timed(read, week, repeat)
        figures[name] = (y, w)
        print(f"{name:34} {y[0] * 1e3:>9.1f} ms {y[1] * 1e3:>5.1f} ms {y[2]:>8,}   "
              f"{w[0] * 1e3:>9.1f} ms {w[1] * 1e3:>5.1f} ms {w[2]:>6,}")  # fmt: skip
    return figures["okx_collector.read_candles"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/okx-collector-bench-read"))
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    began = time.perf_counter()
    past, now = args.cache_dir / "past", args.cache_dir / "now"
    build_past(past)
    build_now(now)
    live = args.cache_dir / "live"
    build_live(live)
    print(f"stores ready in {time.perf_counter() - began:.1f} s")
    api = [
        table(past, "past: the year 2025 (whole) and a week of it", None, WEEK, args.repeat),
        table(now, "now: the last 365 days and the last week", NOW_YEAR, NOW_WEEK, args.repeat),
        table(live, "live: as now, 16 closes in the journal", LIVE_YEAR, LIVE_WEEK, args.repeat),
    ]
    ok = all(year[0] <= 0.050 and week[0] <= 0.010 for year, week in api)
    verdict = "met" if ok else "NOT met"
    print(f"\ntargets (API year <= 50 ms, week <= 10 ms, every store): {verdict}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
