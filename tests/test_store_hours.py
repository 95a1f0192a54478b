"""The live day in hour files: live writes rewrite at most an hour of rows, ended days are merged
into their day files, and no row is ever read twice."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from okx_collector.models import Candle
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe

M1 = Timeframe.parse("1m")
M15 = Timeframe.parse("15m")
DAY = 86_400_000
DAY0 = 1_795_219_200_000  # 2026-11-21 00:00 UTC
INST = "BTC-USDT"


def candles(start: int, n: int, tf: Timeframe = M1, price: float = 100.0) -> list[Candle]:
    return [
        Candle(
            start + i * tf.ms, price + i, price + i + 1, price - 1, price + i, 1.0 + i, 2.0, "ws"
        )
        for i in range(n)
    ]


def live(store: Store, rows: list[Candle], tf: Timeframe = M1, per_call: int = 1) -> None:
    """Write `rows` the way the live writer does: a few at a time, through write_candles_many."""
    for i in range(0, len(rows), per_call):
        store.write_candles_many([(INST, tf, rows[i : i + per_call])])


def files(store: Store, tf: Timeframe = M1) -> list[str]:
    return sorted(p.name for p in (store.data_dir / "candles" / INST / tf.name).glob("*.parquet"))


def file_ts(store: Store, tf: Timeframe = M1) -> list[int]:
    """Every stored `ts`, file by file, as a user reading the folder with pyarrow sees them."""
    folder = store.data_dir / "candles" / INST / tf.name
    return [
        ts for p in sorted(folder.glob("*.parquet")) for ts in pq.read_table(p)["ts"].to_pylist()
    ]


def expected(rows: list[Candle]) -> list[tuple[object, ...]]:
    return [(c.ts, c.open, c.high, c.low, c.close, c.volume, c.quote_volume) for c in rows]


def stored(store: Store, tf: Timeframe = M1) -> list[tuple[object, ...]]:
    t = store.read_candles(INST, tf)
    cols = ["ts", "open", "high", "low", "close", "volume", "quote_volume"]
    return list(zip(*(t[c].to_pylist() for c in cols), strict=True))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "data")


def test_live_writes_go_to_hour_files_of_at_most_sixty_rows(store: Store) -> None:
    rows = candles(DAY0 + 10 * 3_600_000 + 30 * M1.ms, 100)  # 10:30 to 12:09
    live(store, rows)
    assert files(store) == [
        "2026-11-21T10.parquet",
        "2026-11-21T11.parquet",
        "2026-11-21T12.parquet",
    ]
    assert [pq.read_metadata(store.data_dir / "candles" / INST / "1m" / f).num_rows
            for f in files(store)] == [30, 60, 10]  # fmt: skip
    assert stored(store) == expected(rows)
    assert store.last_candle_ts(INST, M1) == rows[-1].ts
    assert store.first_candle_ts(INST, M1) == rows[0].ts
    assert store.compact_pending(100) == 0
    assert len(files(store)) == 3  # the day has not ended: nothing merged


def test_an_ended_day_is_merged_into_its_day_file(store: Store) -> None:
    rows = candles(DAY0 - 90 * M1.ms, 120)  # 22:30 the day before to 00:29
    live(store, rows)
    assert files(store) == [
        "2026-11-20T22.parquet",
        "2026-11-20T23.parquet",
        "2026-11-21T00.parquet",
    ]
    assert store.compact_pending(100) == 0  # merged the ended day; none left waiting
    assert files(store) == ["2026-11-20.parquet", "2026-11-21T00.parquet"]
    assert stored(store) == expected(rows)
    assert file_ts(store) == [c.ts for c in rows]  # no row in two files
    day = pq.read_metadata(store.data_dir / "candles" / INST / "1m" / "2026-11-20.parquet")
    assert day.num_rows == 90 and day.row_group(0).column(1).compression == "ZSTD"


def test_a_live_write_at_or_before_the_day_files_newest_row_goes_to_the_day_file(
    store: Store,
) -> None:
    """A day file written by backfill up to 12:00, then live rows: no ts ends up in two files."""
    store.write_candles(INST, M1, candles(DAY0, 12 * 60 + 1))  # 00:00 .. 12:00
    live(store, candles(DAY0 + 12 * 60 * M1.ms + M1.ms, 5))  # 12:01 .. 12:05: hour file
    assert files(store) == ["2026-11-21.parquet", "2026-11-21T12.parquet"]
    changed = candles(DAY0 + 12 * 60 * M1.ms, 3, price=200.0)  # 12:00 .. 12:02, new values
    live(store, changed, per_call=3)
    assert files(store) == ["2026-11-21.parquet"]  # the hour file was merged in
    want = candles(DAY0, 12 * 60) + changed + candles(DAY0 + 12 * 60 * M1.ms + M1.ms, 5)[2:]
    assert stored(store) == expected(want)
    assert file_ts(store) == [c.ts for c in want]


def test_backfill_into_a_day_with_hour_files_absorbs_them(store: Store) -> None:
    live(store, candles(DAY0 + 5 * 3_600_000, 90))  # 05:00 .. 06:29 in two hour files
    store.write_candles(INST, M1, candles(DAY0, 5 * 60))  # 00:00 .. 04:59, a backfill
    assert files(store) == ["2026-11-21.parquet"]
    assert stored(store) == expected(candles(DAY0, 5 * 60) + candles(DAY0 + 5 * 3_600_000, 90))


def test_a_batch_across_midnight_splits_into_day_file_and_hour_file(store: Store) -> None:
    first = candles(DAY0 - 30 * M1.ms, 20)  # 23:30 .. 23:49 in an hour file
    live(store, first)
    both = candles(DAY0 - 10 * M1.ms, 15, price=300.0)  # 23:50 .. 00:04 in one call (a catch-up)
    live(store, both, per_call=15)
    assert files(store) == ["2026-11-20.parquet", "2026-11-21T00.parquet"]
    assert stored(store) == expected(first + both)


def test_a_merge_interrupted_before_the_hour_files_went_is_read_once_and_finished(
    store: Store, tmp_path: Path
) -> None:
    """A crash between replacing the day file and removing its hour files leaves both."""
    rows = candles(DAY0 - 120 * M1.ms, 150)  # 22:00 the day before .. 00:29
    live(store, rows)
    folder = store.data_dir / "candles" / INST / "1m"
    kept = tmp_path / "kept"
    kept.mkdir()
    for name in ("2026-11-20T22.parquet", "2026-11-20T23.parquet"):
        shutil.copy2(folder / name, kept / name)
    store.compact_pending(100)
    for p in kept.iterdir():
        shutil.copy2(p, folder / p.name)  # as if the removal never happened
    assert len(file_ts(store)) == 150 + 120  # duplicates on disk...
    fresh = Store(store.data_dir)
    assert stored(fresh) == expected(rows)  # ...but never in what the store reads
    assert list(fresh.candle_timestamps(INST, M1)) == [c.ts for c in rows]
    assert fresh.last_candle_ts(INST, M1) == rows[-1].ts
    fresh.recover()  # the next start finishes the merge
    assert files(fresh) == ["2026-11-20.parquet", "2026-11-21T00.parquet"]
    assert file_ts(fresh) == [c.ts for c in rows]


def test_a_restart_merges_what_a_stopped_live_job_left(store: Store) -> None:
    rows = candles(DAY0 - 30 * M1.ms, 60)
    live(store, rows)  # stopped before it merged anything
    assert files(store) == ["2026-11-20T23.parquet", "2026-11-21T00.parquet"]
    Store(store.data_dir).recover()
    assert files(store) == ["2026-11-20.parquet", "2026-11-21T00.parquet"]
    assert stored(Store(store.data_dir)) == expected(rows)


def test_month_partitioned_timeframes_keep_month_files(store: Store) -> None:
    rows = candles(DAY0, 10, M15)
    live(store, rows, M15)
    assert files(store, M15) == ["2026-11.parquet"]
    assert stored(store, M15) == expected(rows)


def test_a_series_given_twice_in_one_call_keeps_both_batches(store: Store) -> None:
    a, b = candles(DAY0, 3), candles(DAY0 + 3 * M1.ms, 3, price=50.0)
    store.write_candles_many([(INST, M1, a), (INST, M1, b)])
    assert stored(store) == expected(a + b)
