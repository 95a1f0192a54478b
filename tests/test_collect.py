"""Live collection against the simulator: every mode, faults, exact data."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from okx_collector.config import Settings
from okx_collector.models import Candle
from okx_collector.simulator import Simulator
from okx_collector.store import Store
from okx_collector.timeframes import MINUTE_MS, Timeframe
from tests.clock_helpers import until_holds
from tests.collect_helpers import assert_exact, iso, run_with, stored_sources

MakeSettings = Callable[..., Settings]
SPEED = 120.0  # a 1m candle closes every 0.5 s
TF1 = Timeframe.parse("1m")
TF5 = Timeframe.parse("5m")
SERIES = ("BTC-USDT", "ETH-USDT-SWAP")


def live_settings(make_settings: MakeSettings, sim: Simulator, mode: str, since: int) -> Settings:
    return make_settings(
        sim, symbols="BTC/USDT,ETH/USDT:USDT", timeframes="1m,5m", since=iso(since), mode=mode,
        poll_interval=0.3, heartbeat=1,
    )  # fmt: skip


@pytest.mark.parametrize("mode", ["ws", "poll", "auto"])
async def test_each_mode_stores_exactly_the_market(make_settings: MakeSettings, mode: str) -> None:
    async with Simulator(seed=11, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        since = (sim.now_ms() - 20 * MINUTE_MS) // 1000 * 1000  # whole seconds, as --since has
        settings = live_settings(make_settings, sim, mode, since)
        store = Store(settings.data_dir)
        # Fixed before the start: the 1m candles two bars past the one open now, and the 5m
        # candle open now, close after the start: stored live, not by the start-up's catch-up.
        live_to = TF1.floor(sim.now_ms()) + 2 * TF1.ms
        live5_to = TF5.floor(sim.now_ms())

        def stored() -> None:
            for inst_id in SERIES:
                assert_exact(store, sim, inst_id, "1m", since, live_to)
                assert_exact(store, sim, inst_id, "5m", since, live5_to)
                sources = stored_sources(store, inst_id, TF1)
                if mode == "ws":  # the newest candles came as pushes
                    assert sources[-5:].count("ws") >= 4, sources
                if mode == "poll":
                    assert set(sources) <= {"backfill", "poll"} and "poll" in sources, sources
            assert len(store.read_funding_live("BTC-USDT-SWAP")) >= 1

        collector = await run_with(settings, lambda: until_holds(stored, "live candles stored"))
        for inst_id in SERIES:  # what the stop flushed is exact too
            assert_exact(store, sim, inst_id, "1m", since, live_to)
            assert_exact(store, sim, inst_id, "5m", since, live5_to)
        assert collector.writer.stats.dropped == 0


async def test_start_up_repairs_holes_in_the_stored_span(make_settings: MakeSettings) -> None:
    """A hole inside what is stored (a file moved aside, a crash of an older tool) is filled
    before going live, not only the downtime after the last stored candle."""
    async with Simulator(seed=12, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        now = sim.now_ms()
        first = TF1.floor(now) - 600 * TF1.ms
        rows = sim.market.candles("BTC-USDT", "1m", first, TF1.floor(now) - 100 * TF1.ms)
        kept = rows[:200] + rows[260:]  # a 60-candle hole
        store = Store(make_settings(sim).data_dir)
        store.write_candles("BTC-USDT", TF1, [Candle(*r, "backfill") for r in kept])
        settings = make_settings(sim, symbols="BTC/USDT", timeframes="1m", since="5m",
                                 mode="poll", poll_interval=0.3, funding=False)  # fmt: skip

        def repaired() -> None:
            assert_exact(store, sim, "BTC-USDT", "1m", first, TF1.floor(now))

        await run_with(settings, lambda: until_holds(repaired, "the hole and the downtime filled"))
        repaired()


async def test_a_clean_stop_leaves_every_close_in_its_day_file_across_midnight(
    make_settings: MakeSettings,
) -> None:
    """Live closes go to the journal; after a clean stop it is empty and each day's candles are
    in that day's file (the series' newest month is kept in day files; a glob of the partitions
    is exact), across a midnight."""
    midnight = 1_790_000_000_000 - 1_790_000_000_000 % (24 * 60 * MINUTE_MS) + 24 * 60 * MINUTE_MS
    start = midnight - 90 * 1000  # 23:58:30: a 1m close every 1 s at speed 60, midnight at 1.5 s
    async with Simulator(seed=13, speed=60.0, start_ms=start, rate_limit_scale=0,
                         push_interval=0.05) as sim:  # fmt: skip
        since = TF1.floor(start) - 30 * TF1.ms
        settings = make_settings(sim, symbols="BTC/USDT", timeframes="1m", since=iso(since),
                                 mode="ws", funding=False, heartbeat=1)  # fmt: skip
        store = Store(settings.data_dir)

        def past_midnight() -> None:  # two candles of the new day
            assert_exact(store, sim, "BTC-USDT", "1m", since, midnight + TF1.ms)

        await run_with(settings, lambda: until_holds(past_midnight, "two bars after midnight"))
        past_midnight()
        names = sorted(p.name for p in (settings.data_dir / "candles/BTC-USDT/1m").glob("*"))
        assert iso(since)[:7] == iso(midnight)[:7]  # (one month, the newest: in day files)
        days = sorted({f"{iso(since)[:10]}.parquet", f"{iso(midnight)[:10]}.parquet"})
        assert names == [".lock", ".series.json", *days]
        assert not list((settings.data_dir / "journal").rglob("*.parquet"))
