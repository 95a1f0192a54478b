"""The one-time move of an older layout's day (and hour) files of candles into month files.

The older layout is written as an older version wrote it: day files of 1m and 5m, an hour file
holding the newest values of one hour, and a month file of a series that was 1m in months
before that. Reads see the same rows before, during and after the move; killed (SIGKILL) at
random instants, the move loses and duplicates no row, leaves every file readable, and the next
start finishes it.
"""

from __future__ import annotations

import logging
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crash_helpers import kill_at_random_instants, parquet_files, read_dataset, temp_files
from okx_collector.models import Candle
from okx_collector.store import Store
from okx_collector.store.layout import DAY_MS, HOUR_MS, Period, partition_of
from okx_collector.store.schema import candles_table
from okx_collector.timeframes import Timeframe

M1, M5 = Timeframe.parse("1m"), Timeframe.parse("5m")
START = 1_767_225_600_000  # 2026-01-01 UTC
DAYS = 75  # three months' worth of day files
MARCH = [f"2026-03-{d:02d}.parquet" for d in range(1, 17)]  # the newest month's: left in days
SERIES = [(f"S{i}-USDT", tf) for i in range(4) for tf in (M1, M5)]


def _candles(inst: str, tf: Timeframe, days: int, price: float) -> list[Candle]:
    n = days * DAY_MS // tf.ms
    ts = START + np.arange(n, dtype=np.int64) * tf.ms
    return [Candle(int(t), price, price + 1, price - 1, price, 1.0, 2.0, "backfill") for t in ts]


def _write_days(folder: Path, table: pa.Table) -> None:
    """`table`'s rows as an older version stored them: one file per UTC day."""
    folder.mkdir(parents=True, exist_ok=True)
    days = table.column("ts").to_numpy() // DAY_MS
    for day in np.unique(days):
        part = partition_of(int(day) * DAY_MS, Period.DAY)
        pq.write_table(table.filter(pa.array(days == day)), folder / part.filename)


def build_legacy(root: Path) -> None:
    for inst, tf in SERIES:
        table = candles_table(inst, tf.name, _candles(inst, tf, DAYS, 100.0))
        _write_days(root / "candles" / inst / tf.name, table)
    # An hour file (a live day's newest rows, an older version's) changes one hour's values.
    folder = root / "candles" / "S0-USDT" / "1m"
    hour = START + 10 * DAY_MS + 5 * HOUR_MS
    newer = [
        Candle(hour + k * M1.ms, 7.0, 8.0, 6.0, 7.0, 1.0, 2.0, "ws") for k in range(60)
    ]  # fmt: skip
    pq.write_table(candles_table("S0-USDT", "1m", newer), folder / "2026-01-11T05.parquet")
    # A month file beside day files of the same month (a 1m series kept in months long ago).
    old = candles_table("S1-USDT", "1m", _candles("S1-USDT", M1, 3, 50.0))
    pq.write_table(old, root / "candles" / "S1-USDT" / "1m" / "2026-01.parquet")


def reads(root: Path) -> dict[str, pa.Table]:
    store = Store(root)
    return {f"{inst} {tf}": store.read_candles(inst, tf) for inst, tf in SERIES}


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("legacy") / "data"
    build_legacy(root)
    return root


@pytest.fixture(scope="module")
def expected(legacy: Path) -> dict[str, pa.Table]:
    return reads(legacy)


def assert_reads(root: Path, expected: dict[str, pa.Table]) -> None:
    got = reads(root)
    for name, table in expected.items():
        assert got[name].num_rows == table.num_rows, name
        assert got[name].equals(table), name


def test_reads_of_the_older_layout_see_the_newest_rows(expected: dict[str, pa.Table]) -> None:
    s0 = expected["S0-USDT 1m"]
    assert s0.num_rows == DAYS * 1440
    hour = START + 10 * DAY_MS + 5 * HOUR_MS
    row = (hour - START) // M1.ms
    assert s0.column("close")[row].as_py() == 7.0 and s0.column("source")[row].as_py() == "ws"
    assert s0.column("close")[row - 1].as_py() == 100.0
    # the day files (newer than the month file) win over it
    assert expected["S1-USDT 1m"].column("close").to_pylist() == [100.0] * (DAYS * 1440)


def test_the_first_start_moves_day_files_into_month_files(
    legacy: Path, expected: dict[str, pa.Table], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "data"
    shutil.copytree(legacy, root)
    with caplog.at_level(logging.INFO, logger="okx_collector.store.migrate"):
        assert Store(root).recover() == []
    notices = [r.getMessage() for r in caplog.records if "month files" in r.getMessage()]
    # (the newest month's 16 day files of each series stay: compaction writes that month in days)
    assert len(notices) == 1 and "folding 473 day files of 8 series" in notices[0], notices
    for inst, tf in SERIES:
        names = sorted(p.name for p in (root / "candles" / inst / tf.name).glob("*.parquet"))
        assert names == ["2026-01.parquet", "2026-02.parquet", *MARCH]
    assert_reads(root, expected)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="okx_collector.store.migrate"):
        assert Store(root).recover() == []  # once
    assert not caplog.records


# The start of a writing command, in a process of its own (killed at random instants).
SCRIPT = textwrap.dedent(
    """
    import sys
    from okx_collector.store import Store
    Store(sys.argv[1]).recover()
    """
)


def test_killed_at_random_instants_loses_and_duplicates_nothing(
    legacy: Path, expected: dict[str, pa.Table], tmp_path: Path
) -> None:
    root = tmp_path / "data"

    def check(root: Path) -> None:
        read_dataset(root)  # every visible file readable
        assert_reads(root, expected)  # no row lost or duplicated, even mid-move

    argv = [sys.executable, "-c", SCRIPT, str(root)]
    kills = kill_at_random_instants(
        argv, root, legacy, rounds=8, seed=16, earliest=0.2, check=check
    )
    assert kills >= 1
    Store(root).recover()
    assert not temp_files(root)
    assert {p.name for p in parquet_files(root)} == {"2026-01.parquet", "2026-02.parquet", *MARCH}
    assert_reads(root, expected)
    # and the files alone (a pandas/DuckDB glob) hold each row once
    for inst, tf in SERIES:
        files = sorted((root / "candles" / inst / tf.name).glob("*.parquet"))
        ts = pa.concat_tables(pq.read_table(p) for p in files).column("ts").to_numpy()
        assert ts.size == expected[f"{inst} {tf}"].num_rows and bool(np.all(ts[1:] > ts[:-1]))
