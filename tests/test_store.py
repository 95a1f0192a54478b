"""Store: layout, schemas, merge semantics, validation, reads and the partition cache."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from okx_collector.errors import BadInput, StorageError
from okx_collector.models import Candle, FundingObservation, FundingRate
from okx_collector.store import (
    CANDLE_SCHEMA,
    FUNDING_LIVE_SCHEMA,
    FUNDING_SCHEMA,
    InvalidInstrumentId,
    InvalidRecords,
    Store,
)
from okx_collector.store.atomic import read_parquet
from okx_collector.timeframes import Timeframe

M1 = Timeframe.parse("1m")
M15 = Timeframe.parse("15m")
H1 = Timeframe.parse("1h")


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def candle(ts: int, price: float = 100.0, source: str = "backfill") -> Candle:
    return Candle(ts, price, price + 1, price - 1, price + 0.5, 2.0, 2.0 * price, source)  # type: ignore[arg-type]


def series(start: int, n: int, tf: Timeframe, price: float = 100.0) -> list[Candle]:
    return [candle(start + i * tf.ms, price + i) for i in range(n)]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "data")


def test_layout_and_schema(store: Store) -> None:
    jan_end = ms("2026-01-31T23:00:00")
    written = store.write_candles("BTC-USDT", H1, series(jan_end, 3, H1))
    assert written == 3
    root = store.data_dir / "candles" / "BTC-USDT" / "1h"
    assert not root.exists()  # in the journal until a compaction
    assert store.read_candles("BTC-USDT", H1).num_rows == 3
    store.compact()
    assert not list((store.data_dir / "journal").rglob("*.parquet"))
    # (the newest month is kept in day files: a compaction rewrites a day, not the month)
    assert sorted(p.name for p in root.glob("*.parquet")) == [
        "2026-01.parquet",
        "2026-02-01.parquet",
    ]
    jan = pq.read_table(root / "2026-01.parquet")
    assert jan.schema.equals(CANDLE_SCHEMA)
    assert jan.column("ts").to_pylist() == [jan_end]
    assert jan.column("inst_id").to_pylist() == ["BTC-USDT"]
    assert jan.column("timeframe").to_pylist() == ["1h"]
    meta = pq.read_metadata(root / "2026-02-01.parquet")
    assert meta.num_row_groups == 1
    assert meta.row_group(0).column(0).statistics.has_min_max
    assert meta.row_group(0).column(0).compression in ("ZSTD", "SNAPPY")


@pytest.mark.parametrize(
    ("tf", "files"),
    [
        ("1m", ["2026-01.parquet", "2026-02-01.parquet"]),
        ("5m", ["2026-01.parquet", "2026-02-01.parquet"]),
        ("15m", ["2026-01.parquet", "2026-02-01.parquet"]),
        ("1d", ["2026-01.parquet", "2026-02-01.parquet", "2026-02-02.parquet"]),
    ],
)
def test_every_timeframe_is_stored_in_month_files(store: Store, tf: str, files: list[str]) -> None:
    """Partitions are sized for readers (writes go to the journal): months for every timeframe,
    but the newest month in day files (a compaction rewrites a day file, not the month's)."""
    frame = Timeframe.parse(tf)
    start = ms("2026-02-01T00:00:00") - 2 * frame.ms
    candles = series(start, 4, frame)
    assert store.write_candles("BTC-USDT", frame, candles) == 4
    assert store.last_candle_ts("BTC-USDT", frame) == candles[-1].ts  # from the journal
    store.compact()
    root = store.data_dir / "candles" / "BTC-USDT" / tf
    assert sorted(p.name for p in root.glob("*.parquet")) == files
    assert store.read_candles("BTC-USDT", frame).column("ts").to_pylist() == [c.ts for c in candles]
    assert store.list_candle_series() == [("BTC-USDT", tf)]
    assert [p.name for p in store.candle_partition_files("BTC-USDT", frame)] == files
    assert [
        p.name for p in store.candle_partition_files("BTC-USDT", frame, start + 2 * frame.ms)
    ] == files[1:]
    assert store.last_candle_ts("BTC-USDT", frame) == candles[-1].ts
    assert store.first_candle_ts("BTC-USDT", frame) == candles[0].ts
    assert sorted(p.name for p in store.dataset_files()) == files
    assert store.recover(deep=True) == []


def test_funding_layouts(store: Store) -> None:
    rates = [
        FundingRate(ms("2025-12-31T16:00:00"), 0.0001, 0.00011, "backfill"),
        FundingRate(ms("2026-01-01T00:00:00"), -0.0002, -0.0002, "backfill"),
    ]
    assert store.write_funding("BTC-USDT-SWAP", rates) == 2
    assert store.last_funding_time("BTC-USDT-SWAP") == ms("2026-01-01T00:00:00")
    store.compact()
    fdir = store.data_dir / "funding" / "BTC-USDT-SWAP"
    assert sorted(p.name for p in fdir.glob("*.parquet")) == ["2025.parquet", "2026.parquet"]
    table = store.read_funding("BTC-USDT-SWAP")
    assert table.schema.equals(FUNDING_SCHEMA)
    assert table.column("funding_rate").to_pylist() == [0.0001, -0.0002]
    assert store.read_funding("BTC-USDT-SWAP", start=ms("2026-01-01T00:00:00")).num_rows == 1
    assert store.last_funding_time("BTC-USDT-SWAP") == ms("2026-01-01T00:00:00")
    assert store.list_funding_series() == ["BTC-USDT-SWAP"]

    obs = [
        FundingObservation(
            ms("2026-01-01T00:00:05"), ms("2026-01-01T08:00:00"), 1e-4, None, None, "ws"
        ),
        FundingObservation(
            ms("2026-01-01T00:01:05"),
            ms("2026-01-01T08:00:00"),
            2e-4,
            ms("2026-01-01T16:00:00"),
            3e-4,
            "poll",
        ),
    ]
    assert store.write_funding_live("BTC-USDT-SWAP", obs) == 2
    store.compact()
    live = store.read_funding_live("BTC-USDT-SWAP")
    assert live.schema.equals(FUNDING_LIVE_SCHEMA)
    assert live.column("next_funding_time").to_pylist() == [None, ms("2026-01-01T16:00:00")]
    assert (store.data_dir / "funding_live" / "BTC-USDT-SWAP" / "2026-01-01.parquet").is_file()
    assert store.list_funding_live_series() == ["BTC-USDT-SWAP"]
    assert store.write_funding_live("BTC-USDT-SWAP", obs) == 2  # rows given, not changed
    assert store.read_funding_live("BTC-USDT-SWAP").equals(live)


@pytest.mark.parametrize("compacted", [False, True])
def test_later_value_wins(store: Store, compacted: bool) -> None:
    start = ms("2026-03-01T00:00:00")
    assert store.write_candles("ETH-USDT", M15, series(start, 10, M15)) == 10
    changed = [candle(start + 2 * M15.ms, 500.0), candle(start + 10 * M15.ms, 7.0)]
    assert store.write_candles("ETH-USDT", M15, changed) == 2  # one changed, one added
    if compacted:
        store.compact()
    table = store.read_candles("ETH-USDT", M15)
    ts = table.column("ts").to_pylist()
    assert ts == sorted(set(ts)) and len(ts) == 11
    assert table.column("open").to_pylist()[2] == 500.0
    # Duplicates inside one batch: the later one wins.
    dup = [candle(start, 1.0), candle(start, 2.0)]
    assert store.write_candles("ETH-USDT", M15, dup) == 2
    assert store.read_candles("ETH-USDT", M15).column("open")[0].as_py() == 2.0
    store.compact()
    assert store.read_candles("ETH-USDT", M15).column("open")[0].as_py() == 2.0
    assert store.read_candles("ETH-USDT", M15).column("open").to_pylist()[2] == 500.0


def test_unchanged_write_does_not_rewrite(store: Store) -> None:
    start = ms("2026-03-01T00:00:00")
    rows = series(start, 5, M15)
    store.write_candles("ETH-USDT", M15, rows)
    store.compact()
    path = store.data_dir / "candles/ETH-USDT/15m/2026-03-01.parquet"  # (newest month: days)
    before = path.stat()
    # Same values from another source are not a change: the file keeps its first provenance.
    again = [c._replace(source="ws") for c in rows[1:3]]
    assert store.write_candles("ETH-USDT", M15, again) == 2
    assert set(store.read_candles("ETH-USDT", M15).column("source").to_pylist()) == {"backfill"}
    Store(store.data_dir).write_candles("ETH-USDT", M15, rows)
    store.compact()
    after = path.stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert set(store.read_candles("ETH-USDT", M15).column("source").to_pylist()) == {"backfill"}
    assert store.write_candles("ETH-USDT", M15, []) == 0


def test_read_ranges_and_edges(store: Store) -> None:
    start = ms("2026-01-31T22:00:00")
    store.write_candles("BTC-USDT", H1, series(start, 5, H1))  # Jan 22:00, 23:00, Feb 0:00..2:00
    assert store.read_candles("BTC-USDT", H1, start + H1.ms, start + 3 * H1.ms).column(
        "ts"
    ).to_pylist() == [start + H1.ms, start + 2 * H1.ms]
    assert store.read_candles("BTC-USDT", H1, start=start + 4 * H1.ms).num_rows == 1
    assert store.read_candles("BTC-USDT", H1, end=start).num_rows == 0
    assert store.read_candles("BTC-USDT", H1, end=start).schema.equals(CANDLE_SCHEMA)
    ts = store.candle_timestamps("BTC-USDT", H1)
    assert ts.dtype == np.int64 and list(ts) == [start + i * H1.ms for i in range(5)]
    assert store.first_candle_ts("BTC-USDT", H1) == start
    assert store.last_candle_ts("BTC-USDT", H1) == start + 4 * H1.ms
    assert Store(store.data_dir).last_candle_ts("BTC-USDT", H1) == start + 4 * H1.ms
    assert store.last_candle_ts("BTC-USDT", M1) is None
    assert store.read_candles("NOPE-USDT", H1).num_rows == 0
    df = store.read_candles_df("BTC-USDT", H1)
    assert list(df.columns) == CANDLE_SCHEMA.names and len(df) == 5
    assert str(df["ts"].dtype) == "int64"


def test_list_series_ignores_foreign_files(store: Store) -> None:
    store.write_candles("BTC-USDT", M15, series(ms("2026-01-01T00:00:00"), 2, M15))
    store.write_candles("ADA-USDT", H1, series(ms("2026-01-01T00:00:00"), 2, H1))
    store.compact()
    (store.data_dir / "candles" / "junk dir" / "15m").mkdir(parents=True)
    (store.data_dir / "candles" / "ETH-USDT" / "7m").mkdir(parents=True)
    (store.data_dir / "candles" / "ETH-USDT" / "15m").mkdir(parents=True)  # empty: no series
    (store.data_dir / "candles" / "BTC-USDT" / "15m" / "notes.txt").write_text("hi")
    assert store.list_candle_series() == [("ADA-USDT", "1h"), ("BTC-USDT", "15m")]
    assert store.list_funding_series() == []


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (candle(ms("2026-01-01T00:00:00") + 1), "not aligned to 15m"),
        (candle(ms("2026-01-01T00:15:00"))._replace(high=float("nan")), "not a finite"),
        (candle(ms("2026-01-01T00:15:00"))._replace(high=99.0), "high is below"),
        (candle(ms("2026-01-01T00:15:00"))._replace(low=101.0), "low is above"),
        (candle(ms("2026-01-01T00:15:00"))._replace(volume=-1.0), "volume"),
        (candle(ms("2026-01-01T00:15:00"))._replace(source="manual"), "source"),  # type: ignore[arg-type]
    ],
)
def test_invalid_batches_write_nothing(store: Store, bad: Candle, words: str) -> None:
    good = series(ms("2026-01-01T01:00:00"), 3, M15)
    with pytest.raises(InvalidRecords, match=words) as info:
        store.write_candles("BTC-USDT", M15, [*good, bad])
    assert isinstance(info.value, ValueError)
    assert "candles BTC-USDT 15m" in str(info.value) and f"ts={bad.ts}" in str(info.value)
    assert store.read_candles("BTC-USDT", M15).num_rows == 0


@pytest.mark.parametrize("mixed", [False, True], ids=["one-timeframe", "two-timeframes"])
def test_a_bad_series_in_a_batch_is_named_and_nothing_is_written(store: Store, mixed: bool) -> None:
    """The batch is checked as a whole; a failure names the series that holds the bad row."""
    start = ms("2026-01-01T01:00:00")
    items = [(f"S{i}-USDT", M15, series(start, 3, M15)) for i in range(5)]
    if mixed:
        items.append(("S9-USDT", H1, series(start, 3, H1)))
    items[3] = ("S3-USDT", M15, [*items[3][2], candle(start + 4 * M15.ms)._replace(low=999.0)])
    with pytest.raises(InvalidRecords, match=r"candles S3-USDT 15m.*low is above"):
        store.write_candles_many(items)
    assert store.list_candle_series() == []


def test_invalid_funding_rejected(store: Store) -> None:
    with pytest.raises(InvalidRecords, match="funding BTC-USDT-SWAP"):
        store.write_funding("BTC-USDT-SWAP", [FundingRate(0, float("inf"), 0.0, "backfill")])
    with pytest.raises(InvalidRecords, match="next funding rate"):
        store.write_funding_live(
            "BTC-USDT-SWAP", [FundingObservation(0, 0, 0.0, None, float("nan"), "ws")]
        )


@pytest.mark.parametrize("inst_id", ["../etc", "btc-usdt", "BTC", "BTC/USDT", "BTC-USDT/..", ""])
def test_inst_ids_are_validated_before_reaching_paths(store: Store, inst_id: str) -> None:
    with pytest.raises(InvalidInstrumentId) as info:
        store.write_candles(inst_id, M15, [])
    assert isinstance(info.value, BadInput)
    with pytest.raises(InvalidInstrumentId):
        store.read_funding(inst_id)
    assert not store.data_dir.exists()


def test_forged_timeframe_rejected(store: Store) -> None:
    with pytest.raises(ValueError, match="timeframe"):
        store.read_candles("BTC-USDT", Timeframe("../x", 60_000))


def test_unwritable_data_dir_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = Store(blocker / "data")
    with pytest.raises(StorageError, match=str(blocker)) as info:
        store.write_candles("BTC-USDT", M15, series(0, 1, M15))
    assert "\n" not in str(info.value) and "--data-dir" in str(info.value)
    with pytest.raises(StorageError):
        store.check_writable()
    assert store.read_candles("BTC-USDT", M15).num_rows == 0  # reading an absent store is fine


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_data_dir(tmp_path: Path) -> None:  # pragma: no cover - needs a non-root user
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="writable"):
            Store(data).write_candles("BTC-USDT", M15, series(0, 1, M15))
    finally:
        data.chmod(0o700)


def test_cache_sees_writes_by_another_store(store: Store) -> None:
    start = ms("2026-05-01T00:00:00")
    store.write_candles("BTC-USDT", M15, series(start, 3, M15))
    other = Store(store.data_dir)
    other.write_candles("BTC-USDT", M15, [candle(start + 3 * M15.ms)])
    # `store` cached the 3-row table; the file changed underneath, so it must re-read.
    assert store.write_candles("BTC-USDT", M15, [candle(start + 4 * M15.ms)]) == 1
    assert store.candle_timestamps("BTC-USDT", M15).size == 5
    assert store.last_candle_ts("BTC-USDT", M15) == start + 4 * M15.ms


def test_concurrent_writes_to_one_partition_lose_nothing(store: Store) -> None:
    start = ms("2026-06-01T00:00:00")

    def worker(k: int) -> None:
        for i in range(25):
            store.write_candles("BTC-USDT", M1, [candle(start + (k * 25 + i) * M1.ms)])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ts = store.candle_timestamps("BTC-USDT", M1)
    assert list(ts) == [start + i * M1.ms for i in range(100)]
    assert not [p for p in store.data_dir.rglob("*") if ".tmp-" in p.name]


def test_files_describe_themselves_in_other_tools(store: Store) -> None:
    store.write_candles("BTC-USDT", M15, series(ms("2026-01-31T23:30:00"), 4, M15))
    store.compact()
    table = pa.concat_tables(
        pq.read_table(p) for p in sorted(store.data_dir.glob("candles/*/*/*.parquet"))
    )
    assert table.num_rows == 4
    assert set(table.column("inst_id").to_pylist()) == {"BTC-USDT"}


def test_write_candles_many_is_one_group_commit_equal_to_single_writes(tmp_path: Path) -> None:
    """Many series in one call (the live writer's path) give the same files as one call each."""
    tf = Timeframe.parse("1h")
    month_end = 1_769_904_000_000  # 2026-02-01 00:00 UTC: batches straddle two month files

    def rows(i: int, start: int, n: int) -> list[Candle]:
        return [
            Candle(start + k * tf.ms, 1.0 + i, 2.0 + i, 0.5, 1.5 + i, 10.0 * k, 15.0, "ws")
            for k in range(n)
        ]

    items = [(f"SIM{i:04d}-USDT", tf, rows(i, month_end - 5 * tf.ms, 10)) for i in range(40)]
    one, many = Store(tmp_path / "one"), Store(tmp_path / "many")
    for inst_id, t, candles in items:
        one.write_candles(inst_id, t, candles)
    assert many.write_candles_many(items) == 40 * 10
    again = [(inst_id, t, c[3:7]) for inst_id, t, c in items]
    assert many.write_candles_many(again) == 40 * 4
    assert len(list((tmp_path / "many" / "journal").rglob("*.parquet"))) == 2  # one per call
    one.compact()
    many.compact()
    for inst_id, t, _ in items:
        assert many.read_candles(inst_id, t).equals(one.read_candles(inst_id, t))
    assert not list((tmp_path / "many").rglob("*.tmp-*"))
    assert len(list((tmp_path / "many").rglob("*.parquet"))) == 80


def test_partitions_are_compressed_for_reading_speed(store: Store) -> None:
    """Open and ended month files alike are snappy: reads decode 3x faster than zstd."""
    m1 = Timeframe.parse("1m")
    now = int(time.time() * 1000) // m1.ms * m1.ms
    # 40 days back (an ended month) and one day ahead (an open one, whatever the date)
    store.write_candles(
        "BTC-USDT", m1, series(now - 40 * 86_400_000, 2, m1) + series(now + 86_400_000, 1, m1)
    )
    store.compact()
    files = sorted((store.data_dir / "candles" / "BTC-USDT" / "1m").glob("*.parquet"))
    codecs = [pq.read_metadata(p).row_group(0).column(1).compression for p in files]
    assert codecs == ["SNAPPY", "SNAPPY"]


def test_a_week_of_a_month_file_decodes_about_a_week(store: Store) -> None:
    """Month files are split in row groups with `ts` statistics, and a range read decodes only
    the groups that overlap it: a week of a 31-day month of 1m, not the month."""
    m1 = Timeframe.parse("1m")
    start = ms("2026-01-01T00:00:00")
    candles = series(start, 31 * 1440 + 1, m1)  # (and February's first: January is a past month)
    store.write_candles("BTC-USDT", m1, candles)
    store.compact()
    path = store.data_dir / "candles" / "BTC-USDT" / "1m" / "2026-01.parquet"
    meta = pq.read_metadata(path)
    assert meta.num_rows == 31 * 1440 and meta.num_row_groups >= 10
    week = (ms("2026-01-10T00:00:00"), ms("2026-01-17T00:00:00"))
    decoded = read_parquet(path, CANDLE_SCHEMA, ["ts"], ("ts", *week))
    assert 7 * 1440 <= decoded.num_rows <= 7 * 1440 + 2 * 4096
    got = store.read_candles("BTC-USDT", m1, *week).column("ts").to_pylist()
    assert got == [c.ts for c in candles if week[0] <= c.ts < week[1]]
    prices = store.read_candles("BTC-USDT", m1, *week, columns=["ts", "close"])
    assert prices.column_names == ["ts", "close"] and prices.num_rows == 7 * 1440
