"""Backfill of mark and index candles and open-interest history through the real ccxt client
against the simulator: stored values equal the simulator's own, value by value; a rerun fetches
only the holes."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import Any

from okx_collector.backfill import run_backfill_async
from okx_collector.backfill.progress import SilentProgress
from okx_collector.config import Settings
from okx_collector.simulator import Simulator
from okx_collector.store import Store
from okx_collector.timeframes import DAY_MS, Timeframe
from tests.conftest import fast_delays

MakeSettings = Callable[..., Settings]
PRICE_COLUMNS = ("ts", "open", "high", "low", "close")
OI_COLUMNS = ("ts", "oi_contracts", "oi_coin", "oi_usd")


async def backfill(settings: Settings) -> Any:
    return await run_backfill_async(
        settings, progress=SilentProgress(), rate_limit_scale=0, delays=fast_delays
    )


def rows(table: Any, columns: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


def routes(sim: Simulator) -> dict[str, int]:
    return dict(sim.stats.rest_by_route)


async def test_mark_index_and_open_interest_equal_the_simulator(
    sim: Simulator, make_settings: MakeSettings
) -> None:
    settings = make_settings(
        sim,
        symbols="BTC/USDT,ETH/USDT:USDT",
        timeframes="1m,1h",
        since="3d",
        series="trade,mark,index,oi",
        funding=False,
    )
    report = await backfill(settings)
    now = sim.now_ms()
    store = Store(settings.data_dir)
    derived = sim.derived
    for tf_name in ("1m", "1h"):
        tf = Timeframe.parse(tf_name)
        start, end = tf.ceil(now - 3 * DAY_MS), tf.floor(now)
        count = (end - start) // tf.ms
        for perp in ("BTC-USDT-SWAP", "ETH-USDT-SWAP"):  # BTC/USDT brings its perpetual
            got = rows(store.read_price_candles("mark", perp, tf), PRICE_COLUMNS)
            assert got == [tuple(r) for r in derived.mark_candles(perp, tf_name, start, end)]
            assert len(got) == count
        for index in ("BTC-USDT", "ETH-USDT"):
            got = rows(store.read_price_candles("index", index, tf), PRICE_COLUMNS)
            assert got == [tuple(r) for r in derived.index_candles(index, tf_name, start, end)]
            assert len(got) == count
        # Trade candles came along, and no mark series exists for the spot pair.
        assert store.read_candles("BTC-USDT", tf).num_rows == count
    assert store.read_price_candles("mark", "BTC-USDT", Timeframe.parse("1m")).num_rows == 0
    # Open interest: only the 1h history exists (OKX keeps none for 1m periods), the instants
    # are the bar closes in [since, now], each equal to the simulator's entry.
    h1 = Timeframe.parse("1h")
    for perp in ("BTC-USDT-SWAP", "ETH-USDT-SWAP"):
        got = rows(store.read_open_interest(perp, h1), OI_COLUMNS)
        want = derived.open_interest_history(perp, "1H", h1.ceil(now - 3 * DAY_MS), now + 1, now)
        assert got == [tuple(r) for r in want] and len(got) >= 72
        assert store.read_open_interest(perp, Timeframe.parse("1m")).num_rows == 0
    assert report.derived.rows["oi"] == sum(
        store.read_open_interest(p, h1).num_rows for p in ("BTC-USDT-SWAP", "ETH-USDT-SWAP")
    )
    assert any("OKX keeps no history" in note for note in report.derived.skipped)
    assert sim.stats.rate_limited == 0 and report.derived.retries == 0
    used = routes(sim)
    for route in (
        "market/mark-price-candles",
        "market/history-mark-price-candles",
        "market/index-candles",
        "market/history-index-candles",
        "rubik/stat/contracts/open-interest-history",
    ):
        assert used.get(route, 0) > 0, route


async def test_rerun_fetches_only_the_holes(sim: Simulator, make_settings: MakeSettings) -> None:
    settings = make_settings(
        sim, symbols="BTC/USDT:USDT", timeframes="1m", since="2d", series="mark", funding=False
    )
    await backfill(settings)
    store = Store(settings.data_dir)
    tf = Timeframe.parse("1m")
    before = rows(store.read_price_candles("mark", "BTC-USDT-SWAP", tf), PRICE_COLUMNS)
    assert store.read_candles("BTC-USDT-SWAP", tf).num_rows == 0  # trade not selected
    # Lose a day file: the next run re-fetches exactly that range.
    days = sorted((settings.data_dir / "mark_candles" / "BTC-USDT-SWAP" / "1m").glob("*.parquet"))
    days[1].unlink()
    shutil.rmtree(settings.data_dir / "journal", ignore_errors=True)
    first = routes(sim)
    report = await backfill(settings)
    second = routes(sim)
    asked = sum(second.get(r, 0) - first.get(r, 0) for r in second if "mark-price" in r)
    assert 1 <= asked <= 16  # a day of 1m: 1,440 rows at 100 a request (and the newest bars)
    after = rows(store.read_price_candles("mark", "BTC-USDT-SWAP", tf), PRICE_COLUMNS)
    want = sim.derived.mark_candles("BTC-USDT-SWAP", "1m", after[0][0], tf.floor(sim.now_ms()))
    assert after == [tuple(r) for r in want]
    assert after[: len(before)] == before
    assert report.derived.rows["mark"] >= 1_440  # the lost day, and the bars closed since
