"""Crash safety: leftover temp files and torn partitions are repaired, reported, and skipped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from okx_collector.models import Candle, FundingObservation
from okx_collector.store import RecoveryNote, Store
from okx_collector.store.atomic import temp_name
from okx_collector.timeframes import Timeframe

M15 = Timeframe.parse("15m")
JAN = int(datetime(2026, 1, 31, 23, 0, tzinfo=UTC).timestamp() * 1000)


def candles(start: int, n: int) -> list[Candle]:
    return [Candle(start + i * M15.ms, 1.0, 2.0, 0.5, 1.5, 3.0, 4.0, "backfill") for i in range(n)]


def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True
    )
    return int(proc.stdout)


@pytest.fixture
def torn(tmp_path: Path) -> tuple[Store, Path, Path]:
    """Jan and Feb partitions, Jan torn in half, and a temp file left by a dead writer."""
    store = Store(tmp_path / "data")
    store.write_candles("BTC-USDT", M15, candles(JAN, 8))  # 4 in January, 4 in February
    store.compact()
    folder = store.data_dir / "candles" / "BTC-USDT" / "15m"
    jan = folder / "2026-01.parquet"
    data = jan.read_bytes()
    jan.write_bytes(data[: len(data) // 2])
    temp = folder / f".2026-02.parquet.tmp-{dead_pid()}-abcd1234"
    temp.write_bytes(b"half a file")
    return store, jan, temp


def test_recover_removes_temp_and_moves_torn_file_aside(torn: tuple[Store, Path, Path]) -> None:
    store, jan, temp = torn
    fresh = Store(store.data_dir)
    notes = fresh.recover()
    assert [n.action for n in notes] == ["removed_temp", "moved_aside"]
    assert notes[0].path == temp and not temp.exists()
    moved = notes[1]
    assert isinstance(moved, RecoveryNote) and moved.path == jan and not jan.exists()
    assert moved.moved_to is not None and moved.moved_to.exists()
    assert moved.moved_to.name.startswith(".2026-01.parquet.corrupt-")
    assert not moved.moved_to.name.endswith(".parquet")
    assert "re-fetched" in str(moved)
    # January now reads as absent; February is intact.
    ts = fresh.candle_timestamps("BTC-USDT", M15)
    assert list(ts) == [JAN + i * M15.ms for i in range(4, 8)]
    assert fresh.first_candle_ts("BTC-USDT", M15) == JAN + 4 * M15.ms
    assert fresh.recover() == []
    # Globs of *.parquet (DuckDB, Polars) no longer see the bad file.
    assert sorted(p.name for p in jan.parent.glob("*.parquet")) == ["2026-02-01.parquet"]
    # A backfill re-fills January.
    assert fresh.write_candles("BTC-USDT", M15, candles(JAN, 4)) == 4
    assert fresh.candle_timestamps("BTC-USDT", M15).size == 8


def test_read_meets_torn_file_without_recover(torn: tuple[Store, Path, Path]) -> None:
    store, jan, _ = torn
    fresh = Store(store.data_dir)
    assert fresh.read_candles("BTC-USDT", M15).num_rows == 4
    notes = fresh.take_notes()
    assert [(n.action, n.path) for n in notes] == [("unreadable", jan)]
    assert fresh.take_notes() == []
    assert jan.exists()  # a read never moves a file: only a writing command's start-up does
    # The lost first month is still where the series starts: a gap, not an absence.
    assert fresh.first_candle_ts("BTC-USDT", M15) == JAN + 4 * M15.ms
    assert fresh.expected_first_ts("BTC-USDT", M15) == JAN
    notes = fresh.recover()
    assert "moved_aside" in [n.action for n in notes] and not jan.exists()
    assert Store(store.data_dir).expected_first_ts("BTC-USDT", M15) == JAN


def test_write_meets_torn_file(torn: tuple[Store, Path, Path]) -> None:
    store, _, _ = torn
    fresh = Store(store.data_dir)
    assert fresh.write_candles("BTC-USDT", M15, candles(JAN, 1)) == 1
    fresh.compact()  # a writing command's compaction, under the data dir's lock
    assert [n.action for n in fresh.take_notes()] == ["moved_aside"]
    assert fresh.candle_timestamps("BTC-USDT", M15).size == 5


def test_last_ts_meets_garbage_newest_partition(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_candles("BTC-USDT", M15, candles(JAN, 8))
    store.compact()
    feb = tmp_path / "candles" / "BTC-USDT" / "15m" / "2026-02-01.parquet"  # (newest: days)
    feb.write_bytes(b"PAR1 garbage")
    fresh = Store(tmp_path)
    assert fresh.last_candle_ts("BTC-USDT", M15) == JAN + 3 * M15.ms
    assert [n.action for n in fresh.take_notes()] == ["unreadable"]
    assert feb.exists()


def test_wrong_schema_is_unreadable(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_candles("BTC-USDT", M15, candles(JAN, 1))
    store.compact()
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "candles" / "BTC-USDT" / "15m" / "2026-01.parquet"
    pq.write_table(pa.table({"ts": [JAN]}), path)
    notes = Store(tmp_path).recover()
    assert [n.action for n in notes] == ["moved_aside"] and "missing columns" in notes[0].reason


def test_deep_recover_finds_corrupt_pages(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_candles("BTC-USDT", M15, candles(JAN, 4))
    store.compact()
    path = tmp_path / "candles" / "BTC-USDT" / "15m" / "2026-01-31.parquet"  # (newest: days)
    data = bytearray(path.read_bytes())
    for i in range(8, len(data) // 2):  # scribble over the column chunks, keep the footer
        data[i] = 0xFF
    path.write_bytes(bytes(data))
    notes = Store(tmp_path).recover(deep=True)
    assert [n.action for n in notes] == ["moved_aside"]


def test_live_or_young_temp_files_are_kept(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_candles("BTC-USDT", M15, candles(JAN, 1))
    store.compact()
    folder = tmp_path / "candles" / "BTC-USDT" / "15m"
    ours = temp_name(folder / "2026-01.parquet")  # this process: maybe a write in flight
    ours.write_bytes(b"x")
    foreign = folder / "notes.tmp"
    foreign.write_bytes(b"x")
    assert store.recover() == []
    assert ours.exists() and foreign.exists()
    old = time.time() - 2 * 3600
    os.utime(ours, (old, old))
    assert [n.action for n in store.recover()] == ["removed_temp"]
    assert foreign.exists()


def test_live_funding_month_file_is_split(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    obs = [FundingObservation(JAN + i * 86_400_000, JAN, 1e-4, None, None, "ws") for i in range(3)]
    store.write_funding_live("BTC-USDT-SWAP", obs)
    store.compact()
    folder = store.data_dir / "funding_live" / "BTC-USDT-SWAP"
    table = pa.concat_tables(pq.read_table(p) for p in sorted(folder.glob("*.parquet")))
    for p in folder.glob("*.parquet"):
        p.unlink()
    pq.write_table(table, folder / "2026-01.parquet")
    pq.write_table(table.slice(1), folder / "2026-02.parquet")
    assert Store(tmp_path / "data").recover()
    assert Store(tmp_path / "data").read_funding_live("BTC-USDT-SWAP").equals(table)
    assert not (folder / "2026-01.parquet").exists()


def test_the_recorded_start_outlives_a_lost_first_partition(tmp_path: Path) -> None:
    """Compaction records where a series starts; once its first partition is gone, the
    expected start still says so (a status gap, a backfill re-fetch)."""
    store = Store(tmp_path)
    store.write_candles("BTC-USDT", M15, candles(JAN + 2 * M15.ms, 6))  # Jan 23:30 .. Feb
    store.compact()
    store.write_candles("BTC-USDT", M15, candles(JAN, 2))  # older rows: the start moves back
    store.compact()
    folder = tmp_path / "candles" / "BTC-USDT" / "15m"
    assert (folder / ".series.json").exists()
    (folder / "2026-01.parquet").unlink()  # lost outright (a user, a disk)
    fresh = Store(tmp_path)
    assert fresh.first_candle_ts("BTC-USDT", M15) == JAN + 4 * M15.ms
    assert fresh.expected_first_ts("BTC-USDT", M15) == JAN
    from okx_collector.status import collect_status

    (status,) = collect_status(fresh, JAN + 10 * M15.ms)
    assert status.coverage.gap_count == 1 and status.coverage.missing == 4
