"""OKX has capped pages below its documented maximum before (100 rows on history-candles until
2025, OKX.md §7): with every endpoint capped at 100, backfill, collect's catch-up and funding
history stay exact, because paging follows what came back, not the page size asked for."""

from __future__ import annotations

from collections.abc import Callable

from okx_collector.config import Settings
from okx_collector.simulator import Simulator
from okx_collector.store import Store
from okx_collector.timeframes import DAY_MS, HOUR_MS, MINUTE_MS, Timeframe
from tests.clock_helpers import until_holds
from tests.collect_helpers import assert_exact, iso, run_with
from tests.conftest import SIM_START
from tests.test_backfill import assert_store_equals_market, backfill

MakeSettings = Callable[..., Settings]
TF1 = Timeframe.parse("1m")
CAPS = {"cap_candles": 100, "cap_history_candles": 100, "cap_funding_history": 100}


async def test_backfill_with_pages_capped_at_100_is_exact(make_settings: MakeSettings) -> None:
    async with Simulator(seed=5, start_ms=SIM_START, rate_limit_scale=0) as sim:
        sim.faults.update(CAPS)
        now = sim.now_ms()
        # 40 days of 15m (3,840 bars: 39 capped pages each) and of funding (120 rows > 100).
        long = make_settings(
            sim, symbols="BTC/USDT,ETH/USDT:USDT", timeframes="15m", since=iso(now - 40 * DAY_MS)
        )
        report = await backfill(long)
        # 10 hours of 1m: history-candles and market/candles both capped.
        short = make_settings(
            sim,
            symbols="BTC/USDT,ETH/USDT:USDT",
            timeframes="1m",
            since=iso(now - 30 * HOUR_MS),
            funding=False,
        )
        await backfill(short)
        store = Store(long.data_dir)
        for inst_id in ("BTC-USDT", "ETH-USDT-SWAP"):
            assert_store_equals_market(store, sim, inst_id, "15m", now - 40 * DAY_MS, now)
            assert_store_equals_market(store, sim, inst_id, "1m", now - 30 * HOUR_MS, now)
        for perp in ("BTC-USDT-SWAP", "ETH-USDT-SWAP"):
            table = store.read_funding(perp)
            columns = ("funding_time", "funding_rate", "realized_rate")
            got = list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
            expected = [tuple(r) for r in sim.market.funding_history(perp, now - 40 * DAY_MS, now)]
            assert len(expected) > 100
            assert got == expected
        assert report.funding_rows == sum(
            len(sim.market.funding_history(p, now - 40 * DAY_MS, now))
            for p in ("BTC-USDT-SWAP", "ETH-USDT-SWAP")
        )


async def test_collect_catch_up_with_pages_capped_at_100_is_exact(
    make_settings: MakeSettings,
) -> None:
    async with Simulator(seed=6, speed=120.0, rate_limit_scale=0, push_interval=0.05) as sim:
        sim.faults.update(CAPS)
        since = (
            (sim.now_ms() - 8 * HOUR_MS) // MINUTE_MS * MINUTE_MS
        )  # 480 missing 1m candles at start: 5 capped pages
        settings = make_settings(
            sim, symbols="BTC/USDT,ETH/USDT:USDT", timeframes="1m", since=iso(since),
            mode="poll", poll_interval=0.3, heartbeat=0.5, funding=False,
        )  # fmt: skip
        store = Store(settings.data_dir)
        # Fixed before the start: three candles past the one open now are polled live, after
        # the capped catch-up.
        live_to = TF1.floor(sim.now_ms()) + 3 * MINUTE_MS

        def stored() -> None:
            for inst_id in ("BTC-USDT", "ETH-USDT-SWAP"):
                assert_exact(store, sim, inst_id, "1m", since, live_to)

        await run_with(settings, lambda: until_holds(stored, "caught up, then polled live"))
        stored()
