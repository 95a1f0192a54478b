"""Month series keep their newest month in day files: a compaction round rewrites a day file per
series, not the month's (44,640 rows of 1m); a past month is folded into its month file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from okx_collector.models import Candle
from okx_collector.store import Store
from okx_collector.store.series import FOLD_DAYS
from okx_collector.timeframes import Timeframe

M1 = Timeframe.parse("1m")
INST = "BTC-USDT"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def candles(start: int, n: int, price: float = 100.0, source: str = "backfill") -> list[Candle]:
    return [
        Candle(
            start + i * M1.ms, price + i, price + i + 1, price + i - 1, price + i, 1.0, 2.0, source
        )  # type: ignore[arg-type]
        for i in range(n)
    ]


def folder(store: Store) -> Path:
    return store.data_dir / "candles" / INST / "1m"


def names(store: Store) -> list[str]:
    return sorted(p.name for p in folder(store).glob("*.parquet"))


def stats(store: Store) -> dict[str, tuple[int, int]]:
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder(store).glob("*.parquet")
    }


def read(store: Store, start: int | None = None, end: int | None = None) -> pa.Table:
    return Store(store.data_dir).read_candles(INST, M1, start, end)


@pytest.fixture
def november(tmp_path: Path) -> Store:
    """Three days of 1m in November, the series' newest month: in day files."""
    store = Store(tmp_path / "data")
    store.write_candles(INST, M1, candles(ms("2026-11-01T00:00:00"), 3 * 1440))
    store.compact()
    return store


def test_the_newest_month_is_in_day_files_and_a_round_rewrites_one(november: Store) -> None:
    store = november
    days = ["2026-11-01.parquet", "2026-11-02.parquet", "2026-11-03.parquet"]
    assert names(store) == days
    before = stats(store)
    # a live round: 16 closes of the newest day (some new, some revised)
    store.write_candles(INST, M1, candles(ms("2026-11-03T23:44:00"), 16, price=7.0, source="ws"))
    store.compact()
    after = stats(store)
    changed = [n for n in days if before[n] != after[n]]
    assert changed == ["2026-11-03.parquet"] and names(store) == days
    assert read(store).num_rows == 3 * 1440
    assert read(store).column("close")[-1].as_py() == 22.0


def test_an_older_month_without_day_files_goes_to_its_month_file(november: Store) -> None:
    store = november
    store.write_candles(INST, M1, candles(ms("2026-10-30T00:00:00"), 1440))
    store.compact()
    assert names(store)[0] == "2026-10.parquet" and not any(
        n.startswith("2026-10-") for n in names(store)
    )
    assert read(store).num_rows == 4 * 1440


def test_a_newer_month_folds_the_past_month_into_its_month_file(november: Store) -> None:
    store = november
    nov = (ms("2026-11-01T00:00:00"), ms("2026-12-01T00:00:00"))
    before = read(store, *nov)
    store.write_candles(INST, M1, candles(ms("2026-12-01T00:00:00"), 5))
    store.compact()
    assert names(store) == ["2026-11.parquet", "2026-12-01.parquet"]
    after = read(store, *nov)
    assert after.equals(before)  # value by value, source included
    assert read(store, nov[1]).num_rows == 5


def test_a_round_reaching_past_a_month_with_more_of_its_days_folds_them_all(
    november: Store,
) -> None:
    """A backfill's round that brings the rest of November and December's start leaves
    November as one month file, the round's days of it included (not day files beside it)."""
    store = november
    store.write_candles(INST, M1, candles(ms("2026-11-02T12:00:00"), 3 * 1440, price=5.0))
    store.write_candles(INST, M1, candles(ms("2026-12-01T00:00:00"), 5))
    store.compact()
    assert names(store) == ["2026-11.parquet", "2026-12-01.parquet"]
    nov = read(store, ms("2026-11-01T00:00:00"), ms("2026-12-01T00:00:00"))
    assert nov.num_rows == 4 * 1440 + 720
    assert nov.column("close")[1440 + 720].as_py() == 5.0  # the round's row won


def crashed_fold(store: Store) -> dict[str, bytes]:
    """The state a kill between the month file's write and the day files' deletes leaves."""
    saved = {p.name: p.read_bytes() for p in folder(store).glob("*.parquet")}
    store.write_candles(INST, M1, candles(ms("2026-12-01T00:00:00"), 5))
    store.compact()
    for name, data in saved.items():
        (folder(store) / name).write_bytes(data)
    assert "2026-11.parquet" in names(store) and "2026-11-02.parquet" in names(store)
    return saved


def test_a_rerun_after_a_crash_mid_fold_is_harmless(november: Store) -> None:
    store = november
    whole = read(store)
    crashed_fold(store)
    assert read(store, end=ms("2026-12-01T00:00:00")).equals(whole)  # reads dedupe the copies
    Store(store.data_dir).recover()  # a start folds the past month's day files again
    assert names(store) == ["2026-11.parquet", "2026-12-01.parquet"]
    assert read(store, end=ms("2026-12-01T00:00:00")).equals(whole)
    # and a start leaves the newest month in day files (it would fold them at every start)
    Store(store.data_dir).recover()
    assert names(store) == ["2026-11.parquet", "2026-12-01.parquet"]


def test_a_later_row_for_a_past_month_with_day_files_wins(november: Store) -> None:
    store = november
    crashed_fold(store)
    key = ms("2026-11-02T12:00:00")
    fresh = Store(store.data_dir)  # (a new process: nothing remembered)
    fresh.write_candles(INST, M1, [Candle(key, 1.0, 2.0, 0.5, 1.5, 9.0, 9.0, "ws")])
    fresh.compact()  # the row goes into the day file, then the month is folded
    assert names(store) == ["2026-11.parquet", "2026-12-01.parquet"]
    got = read(store, key, key + M1.ms)
    assert got.column("close").to_pylist() == [1.5] and got.column("source").to_pylist() == ["ws"]
    assert read(store).num_rows == 3 * 1440 + 5


def test_a_month_file_beside_the_newest_months_day_files_loses_to_them(tmp_path: Path) -> None:
    """A month file of the newest month (from the month-only layout) keeps its rows; a round's
    rows of days it does not reach go to day files, which win; a revised row of a finished day
    it holds goes into it; an equal row stays stored with its first `source`."""
    store = Store(tmp_path / "data")
    start = ms("2026-11-01T00:00:00")
    store.write_candles(INST, M1, candles(start, 2 * 1440 + 1))  # (and Nov 3's first)
    store.compact()
    (folder(store) / "2026-11-01.parquet").rename(folder(store) / "2026-11.parquet")
    (folder(store) / "2026-11-02.parquet").unlink()
    (folder(store) / "2026-11-03.parquet").unlink()
    month = read(store)
    assert month.num_rows == 1440
    fresh = Store(store.data_dir)
    fresh.write_candles(INST, M1, candles(start, 2, source="ws"))  # equal values: no change
    fresh.write_candles(INST, M1, candles(start + 1440 * M1.ms, 1))
    fresh.compact()
    assert names(store) == ["2026-11-02.parquet", "2026-11.parquet"]
    assert read(store).num_rows == 1441
    assert set(read(store).column("source").to_pylist()) == {"backfill"}
    fresh.write_candles(INST, M1, candles(start, 1, price=3.0, source="ws"))
    fresh.compact()
    assert read(store).column("close")[0].as_py() == 3.0
    assert read(store).column("source")[0].as_py() == "ws"
    assert names(store) == ["2026-11-02.parquet", "2026-11.parquet"]


def live_days(store: Store, first: str, days: int) -> None:
    """`days` days of 1m from `first`, each compacted as a collector's rounds leave it."""
    for day in range(days):
        store.write_candles(INST, M1, candles(ms(first) + day * 1440 * M1.ms, 1440))
        store.compact()


def test_the_newest_months_finished_days_are_folded_once_enough_wait(november: Store) -> None:
    store = november  # Nov 1-3 in day files
    live_days(store, "2026-11-04T00:00:00", FOLD_DAYS - 3)  # (to Nov 7: 6 finished days)
    assert len(names(store)) == FOLD_DAYS and "2026-11.parquet" not in names(store)
    before = read(store)
    live_days(store, "2026-11-08T00:00:00", 1)  # Nov 8 begins: 7 finished days, folded
    assert names(store) == ["2026-11-08.parquet", "2026-11.parquet"]
    assert read(store, end=ms("2026-11-08T00:00:00")).equals(before)  # source included
    # a late revision of a folded day goes into the month file: no key is in two files
    key = ms("2026-11-02T12:00:00")
    store.write_candles(INST, M1, [Candle(key, 1.0, 2.0, 0.5, 1.5, 9.0, 9.0, "ws")])
    store.compact()
    assert names(store) == ["2026-11-08.parquet", "2026-11.parquet"]
    got = read(store, key, key + M1.ms)
    assert got.column("close").to_pylist() == [1.5] and got.column("source").to_pylist() == ["ws"]
    assert read(store).num_rows == 8 * 1440
    # an equal row re-fetched for a folded day changes nothing and writes no file
    files = stats(store)
    store.write_candles(INST, M1, candles(ms("2026-11-05T00:00:00"), 3, source="poll"))
    store.compact()
    assert stats(store) == files


def test_a_crash_mid_fold_of_the_newest_month_reads_the_same_and_is_finished(
    november: Store,
) -> None:
    store = november
    live_days(store, "2026-11-04T00:00:00", FOLD_DAYS - 3)
    saved = {p.name: p.read_bytes() for p in folder(store).glob("*.parquet")}
    live_days(store, "2026-11-08T00:00:00", 1)
    whole = read(store)
    for name, data in saved.items():  # killed between the month file's write and the deletes
        (folder(store) / name).write_bytes(data)
    assert len(names(store)) == FOLD_DAYS + 2
    assert read(store).equals(whole)  # reads dedupe the copies (equal values)
    fresh = Store(store.data_dir)  # the next round of a new process finishes the fold
    fresh.write_candles(INST, M1, candles(ms("2026-11-08T00:00:00"), 1440)[-1:])  # (stored)
    fresh.compact()
    assert names(store) == ["2026-11-08.parquet", "2026-11.parquet"]
    assert read(store).equals(whole)


def test_a_revised_row_of_a_day_left_by_a_crash_mid_fold_wins(november: Store) -> None:
    """A day file a killed fold left lists after the month file: a revised row of that day goes
    to it (not under it into the month file), and the next fold keeps it."""
    store = november
    live_days(store, "2026-11-04T00:00:00", FOLD_DAYS - 3)
    saved = {p.name: p.read_bytes() for p in folder(store).glob("*.parquet")}
    live_days(store, "2026-11-08T00:00:00", 1)
    for name, data in saved.items():
        (folder(store) / name).write_bytes(data)
    key = ms("2026-11-02T12:00:00")
    fresh = Store(store.data_dir)
    fresh.write_candles(INST, M1, [Candle(key, 1.0, 2.0, 0.5, 1.5, 9.0, 9.0, "ws")])
    fresh.compact()
    assert names(store) == ["2026-11-08.parquet", "2026-11.parquet"]
    got = read(store, key, key + M1.ms)
    assert got.column("close").to_pylist() == [1.5] and got.column("source").to_pylist() == ["ws"]
    assert read(store).num_rows == 8 * 1440


def test_a_read_with_the_journal_equals_the_read_after_its_compaction(tmp_path: Path) -> None:
    """Reads apply the precedence rule to the journal's rows and the stored rows from the
    journal's oldest key on: a revised row of a past month, an equal row re-sent with another
    source, and new rows read the same before and after the compaction that stores them."""
    store = Store(tmp_path / "data")
    stored = candles(ms("2026-10-30T00:00:00"), 5 * 1440)  # Oct 30 .. Nov 3
    store.write_candles(INST, M1, stored)
    store.compact()
    revised = ms("2026-10-31T06:00:00")
    store.write_candles(INST, M1, [Candle(revised, 1.0, 2.0, 0.5, 1.5, 9.0, 9.0, "ws")])
    store.write_candles(INST, M1, [c._replace(source="poll") for c in stored[4000:4003]])
    store.write_candles(INST, M1, candles(ms("2026-11-05T00:00:00"), 3, source="ws"))
    columns = ["ts", "open", "high", "low", "close", "volume", "quote_volume"]
    week = (ms("2026-10-31T00:00:00"), ms("2026-11-05T00:01:00"))

    def reads() -> list[pa.Table]:
        fresh = Store(store.data_dir)
        return [
            fresh.read_candles(INST, M1),
            fresh.read_candles(INST, M1, *week),
            fresh.read_candles(INST, M1, columns=columns),
            fresh.read_candles(INST, M1, revised + M1.ms, None, columns=columns),
        ]

    before = reads()
    assert store.journal_pending() == 3
    store.compact()
    assert store.journal_pending() == 0
    after = reads()
    for old, new in zip(before, after, strict=True):
        assert old.equals(new)
    assert before[0].num_rows == 5 * 1440 + 3
    assert set(before[0].column("source").to_pylist()) == {"backfill", "ws"}
