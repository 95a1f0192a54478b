"""The public read API returns what the simulator served, indexed by UTC time, and refuses bad
input with one clear line."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import okx_collector
from okx_collector import SeriesNotStored, read_candles, read_funding
from okx_collector.backfill import run_backfill_async
from okx_collector.backfill.progress import SilentProgress
from okx_collector.config import Settings
from okx_collector.errors import BadInput
from okx_collector.models import Candle
from okx_collector.simulator import Simulator
from okx_collector.store import Store
from okx_collector.timeframes import DAY_MS, HOUR_MS, Timeframe
from tests.conftest import fast_delays

MakeSettings = Callable[..., Settings]


def utc(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


@pytest.fixture
async def backfilled(sim: Simulator, make_settings: MakeSettings) -> tuple[Simulator, Path]:
    settings = make_settings(sim, symbols="BTC/USDT,ETH/USDT:USDT", timeframes="1m,1h", since="2d")
    await run_backfill_async(
        settings, progress=SilentProgress(), rate_limit_scale=0, delays=fast_delays
    )
    return sim, settings.data_dir


async def test_candles_equal_the_exchange_value_by_value(
    backfilled: tuple[Simulator, Path],
) -> None:
    sim, data_dir = backfilled
    df = read_candles(data_dir, "BTC/USDT", "1m")
    start = int(df.index[0].value // 1_000_000)
    end = int(df.index[-1].value // 1_000_000) + 60_000
    expected = sim.market.candles("BTC-USDT", "1m", start, end)
    assert len(df) == len(expected) == (end - start) // 60_000
    assert abs((end - start) - 2 * DAY_MS) <= 60_000  # --since 2d, up to the last closed candle
    assert list(df.columns) == ["open", "high", "low", "close", "volume", "quote_volume"]
    assert df.index.name == "time" and str(df.index.tz) == "UTC"
    assert df.index.is_monotonic_increasing and df.index.is_unique
    got = [
        (int(t.value // 1_000_000), *row)
        for t, row in zip(df.index, df.itertuples(index=False), strict=True)
    ]
    assert got == [tuple(r) for r in expected]
    assert all(df.dtypes == np.float64)


async def test_symbols_instids_and_time_bounds_select_the_same_rows(
    backfilled: tuple[Simulator, Path],
) -> None:
    sim, data_dir = backfilled
    end = Timeframe.parse("1h").floor(sim.now_ms())
    start = end - 10 * HOUR_MS
    iso = utc(start).isoformat()
    as_dt = utc(start).to_pydatetime()
    naive = as_dt.replace(tzinfo=None)  # naive datetimes are UTC
    frames = [
        read_candles(data_dir, "ETH/USDT:USDT", "1h", start=start, end=end),
        read_candles(data_dir, "ETH-USDT-SWAP", "1h", start=iso, end=utc(end).isoformat()),
        read_candles(data_dir, "eth-usdt-swap", "1h", start=as_dt, end=utc(end)),
        read_candles(data_dir, "ETH/USDT:USDT", Timeframe.parse("1h"), naive, np.int64(end)),
    ]
    assert len(frames[0]) == 10
    assert frames[0].index[0] == utc(start) and frames[0].index[-1] == utc(end - HOUR_MS)
    for other in frames[1:]:
        pd.testing.assert_frame_equal(frames[0], other)
    later = datetime.fromtimestamp(end / 1000 + 3600, UTC)
    assert read_candles(data_dir, "ETH/USDT:USDT", "1h", start=later).empty


async def test_funding_equals_the_exchange(backfilled: tuple[Simulator, Path]) -> None:
    sim, data_dir = backfilled
    now = sim.now_ms()
    df = read_funding(data_dir, "BTC/USDT:USDT")
    expected = sim.market.funding_history("BTC-USDT-SWAP", now - 2 * DAY_MS, now)
    assert len(df) == len(expected) > 0
    assert list(df.columns) == ["funding_rate", "realized_rate"]
    got = [
        (int(t.value // 1_000_000), *row)
        for t, row in zip(df.index, df.itertuples(index=False), strict=True)
    ]
    assert got == [tuple(r) for r in expected]


async def test_bad_input_is_one_clear_line(backfilled: tuple[Simulator, Path]) -> None:
    _, data_dir = backfilled
    with pytest.raises(SeriesNotStored, match=r"no candles series BTC-USDT 15m .*did you mean"):
        read_candles(data_dir, "BTC/USDT", "15m")
    with pytest.raises(SeriesNotStored, match=r"no funding series BTC-USDT .*BTC-USDT-SWAP"):
        read_funding(data_dir, "BTC/USDT")
    with pytest.raises(BadInput, match="unknown timeframe '7x'"):
        read_candles(data_dir, "BTC/USDT", "7x")
    with pytest.raises(BadInput, match=r"start='yesterday-ish' is not a time"):
        read_candles(data_dir, "BTC/USDT", "1m", start="yesterday-ish")
    with pytest.raises(BadInput, match="no dataset at"):
        read_candles(data_dir / "nope", "BTC/USDT", "1m")
    for exc in (SeriesNotStored, BadInput):
        assert issubclass(exc, okx_collector.errors.CollectorError)
    assert isinstance(SeriesNotStored("x"), LookupError)


def test_the_api_is_exported_and_lazy() -> None:
    assert {"read_candles", "read_funding", "SeriesNotStored"} <= set(okx_collector.__all__)
    with pytest.raises(AttributeError):
        okx_collector.no_such_thing  # noqa: B018


def test_repeated_reads_see_every_write_and_compaction(tmp_path: Path) -> None:
    """The API keeps a data dir's store between calls (its decoded journal files): a later call
    still sees rows written since, by another process's store, before and after compaction."""
    tf = Timeframe.parse("1m")
    start = 1_764_547_200_000  # 2025-12-01 00:00 UTC

    def bars(first: int, n: int, price: float) -> list[Candle]:
        return [
            Candle(first + i * tf.ms, price, price + 1, price - 1, price, 1.0, price, "backfill")
            for i in range(n)
        ]

    writer = Store(tmp_path)
    writer.write_candles("BTC-USDT", tf, bars(start, 3, 10.0))
    assert len(read_candles(tmp_path, "BTC-USDT", "1m")) == 3
    writer.write_candles("BTC-USDT", tf, bars(start + 3 * tf.ms, 2, 20.0))  # in the journal
    writer.write_candles("BTC-USDT", tf, bars(start, 1, 30.0))  # a revision
    df = read_candles(str(tmp_path), "BTC-USDT", "1m")
    assert df["close"].tolist() == [30.0, 10.0, 10.0, 20.0, 20.0]
    writer.compact()
    assert read_candles(tmp_path, "BTC-USDT", "1m").equals(df)
