"""Backfills against the simulator equal the simulator's own data, value by value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from okx_collector.backfill import run_backfill_async
from okx_collector.backfill.progress import SilentProgress
from okx_collector.config import Settings
from okx_collector.models import Candle
from okx_collector.simulator import Simulator
from okx_collector.store import Store
from okx_collector.timeframes import DAY_MS, Timeframe
from tests.collect_helpers import iso, stored_rows
from tests.conftest import fast_delays

MakeSettings = Callable[..., Settings]


async def backfill(settings: Settings, scale: float = 0) -> Any:
    return await run_backfill_async(
        settings, progress=SilentProgress(), rate_limit_scale=scale, delays=fast_delays
    )


def assert_store_equals_market(
    store: Store, sim: Simulator, inst_id: str, tf_name: str, start: int, end: int
) -> None:
    tf = Timeframe.parse(tf_name)
    end = tf.floor(min(end, sim.now_ms()))  # only candles closed by `end` (and by now) count
    stored = stored_rows(store, inst_id, tf, start, end)
    expected = [tuple(r) for r in sim.market.candles(inst_id, tf_name, start, end)]
    assert len(expected) == (tf.floor(end) - tf.ceil(start)) // tf.ms
    assert stored == expected


async def test_backfill_equals_the_exchange(sim: Simulator, make_settings: MakeSettings) -> None:
    settings = make_settings(
        sim, symbols="BTC/USDT,ETH/USDT:USDT,ADA/USDT", timeframes="1m,15m,1h", since="3d"
    )
    report = await backfill(settings)
    now = sim.now_ms()
    store = Store(settings.data_dir)
    for inst_id in ("BTC-USDT", "ETH-USDT-SWAP", "ADA-USDT"):
        for tf_name in ("1m", "15m", "1h"):
            tf = Timeframe.parse(tf_name)
            assert_store_equals_market(
                store, sim, inst_id, tf_name, now - 3 * DAY_MS, tf.floor(now)
            )
            sources = set(store.read_candles(inst_id, tf).column("source").to_pylist())
            assert sources == {"backfill"}
    for perp in ("BTC-USDT-SWAP", "ETH-USDT-SWAP", "ADA-USDT-SWAP"):
        table = store.read_funding(perp)
        got = list(
            zip(
                *(
                    table.column(c).to_pylist()
                    for c in ("funding_time", "funding_rate", "realized_rate")
                ),
                strict=True,
            )
        )
        assert got == [tuple(r) for r in sim.market.funding_history(perp, now - 3 * DAY_MS, now)]
        assert len(got) == 9
    assert report.retries == 0


async def test_rerun_fetches_only_the_holes(sim: Simulator, make_settings: MakeSettings) -> None:
    settings = make_settings(sim, symbols="BTC/USDT", timeframes="1m", since="2d", funding=False)
    store = Store(settings.data_dir)
    now = sim.now_ms()
    tf = Timeframe.parse("1m")
    start, end = tf.ceil(now - 2 * DAY_MS), tf.floor(now)
    everything = [
        Candle(*row, "backfill") for row in sim.market.candles("BTC-USDT", "1m", start, end)
    ]
    # A partial earlier run: the first half, minus a hole of 700 candles in the middle.
    kept = everything[: len(everything) // 2]
    kept = kept[:300] + kept[1000:]
    store.write_candles("BTC-USDT", tf, kept)
    report = await backfill(settings)
    assert_store_equals_market(store, sim, "BTC-USDT", "1m", start, end)
    missing = len(everything) - len(kept)
    assert report.written == missing
    # 700-candle hole = 3 pages; the second half = ceil(1440/300) = 5 pages (maybe 6 with clock).
    assert report.pages <= 3 + 6
    again = await backfill(settings)
    assert again.pages == 0 and again.written == 0


async def test_earlier_since_prepends(sim: Simulator, make_settings: MakeSettings) -> None:
    store_settings = make_settings(sim, symbols="DOT/USDT", timeframes="15m", since="2d",
                                   funding=False)  # fmt: skip
    await backfill(store_settings)
    wider = make_settings(sim, symbols="DOT/USDT", timeframes="15m", since="9d", funding=False)
    report = await backfill(wider)
    now = sim.now_ms()
    store = Store(wider.data_dir)
    assert_store_equals_market(store, sim, "DOT-USDT", "15m", now - 9 * DAY_MS, now)
    assert report.written == 7 * 96


async def test_backfill_stops_at_the_listing_date(
    sim: Simulator, make_settings: MakeSettings
) -> None:
    listed = next(i.list_time for i in sim.market.instruments() if i.inst_id == "LINK-USDT")
    since = listed - 400 * DAY_MS  # a year before the listing: ~37 empty 1h pages if walked
    settings = make_settings(
        sim, symbols="LINK/USDT", timeframes="1h", funding=False,
        since=iso(since), until=iso(listed + 20 * DAY_MS),
    )  # fmt: skip
    report = await backfill(settings)
    store = Store(settings.data_dir)
    assert_store_equals_market(store, sim, "LINK-USDT", "1h", listed, listed + 20 * DAY_MS)
    assert store.first_candle_ts("LINK-USDT", Timeframe.parse("1h")) == Timeframe.parse("1h").ceil(
        listed
    )
    assert report.pages < 12  # the empty year before the listing is not walked page by page


@pytest.mark.parametrize("fault", ["rest_429_share", "rest_5xx_share"])
async def test_refusals_and_errors_are_retried_without_holes(
    sim: Simulator, make_settings: MakeSettings, fault: str
) -> None:
    setattr(sim.faults, fault, 0.3)
    settings = make_settings(sim, symbols="BTC/USDT,ETH/USDT", timeframes="15m", since="5d")
    report = await backfill(settings)
    setattr(sim.faults, fault, 0.0)
    assert report.retries > 0
    now = sim.now_ms()
    store = Store(settings.data_dir)
    for inst_id in ("BTC-USDT", "ETH-USDT"):
        assert_store_equals_market(store, sim, inst_id, "15m", now - 5 * DAY_MS, now)
    assert len(store.read_funding("BTC-USDT-SWAP")) == 15


async def test_paced_backfill_is_never_refused(make_settings: MakeSettings) -> None:
    """At OKX's documented limits on both sides, no request is refused."""
    async with Simulator(seed=5, rate_limit_scale=1.0) as sim:
        settings = make_settings(sim, symbols="BTC/USDT,ETH/USDT,ADA/USDT", timeframes="1m",
                                 since="3d", funding=False)  # fmt: skip
        report = await backfill(settings, scale=1.0)
        assert report.pages >= 45  # beyond one burst window of either endpoint
        assert report.retries == 0
        assert sim.stats.rate_limited == 0
