"""Live collection against the simulator: every mode, faults, exact data."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from okx_collector.config import Settings
from okx_collector.models import Candle
from okx_collector.simulator import Simulator
from okx_collector.store import Store
from okx_collector.timeframes import MINUTE_MS, Timeframe
from tests.collect_helpers import assert_exact, collect_for, iso

MakeSettings = Callable[..., Settings]
SPEED = 120.0  # a 1m candle closes every 0.5 s
TF1 = Timeframe.parse("1m")


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
        collector = await collect_for(settings, 5.0)
        end = TF1.floor(sim.now_ms())
        store = Store(settings.data_dir)
        for inst_id in ("BTC-USDT", "ETH-USDT-SWAP"):
            # Everything closed more than ~1 s (2 bars) before the stop is on disk.
            sources = assert_exact(store, sim, inst_id, "1m", since, end - 3 * TF1.ms)
            tf5 = Timeframe.parse("5m")
            assert_exact(store, sim, inst_id, "5m", since, tf5.floor(end) - 3 * tf5.ms)
            live = [s for s in sources[-5:]]
            if mode == "ws":
                assert live.count("ws") >= 4, sources
            if mode == "poll":
                assert set(sources) <= {"backfill", "poll"} and "poll" in sources
        funding_live = store.read_funding_live("BTC-USDT-SWAP")
        assert len(funding_live) >= 1
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
        await collect_for(settings, 2.0)
        assert_exact(store, sim, "BTC-USDT", "1m", first, TF1.floor(now))


async def test_a_clean_stop_leaves_every_close_in_its_day_file_across_midnight(
    make_settings: MakeSettings,
) -> None:
    """Live closes go to the journal; after a clean stop it is empty and each day's candles are
    in that day's file (the series' newest month is kept in day files; a glob of the partitions
    is exact), across a midnight."""
    midnight = 1_790_000_000_000 - 1_790_000_000_000 % (24 * 60 * MINUTE_MS) + 24 * 60 * MINUTE_MS
    start = midnight - 90 * 1000  # 23:58:30: a 1m close every 2 s at speed 30, midnight at 3 s
    async with Simulator(seed=13, speed=30.0, start_ms=start, rate_limit_scale=0,
                         push_interval=0.05) as sim:  # fmt: skip
        since = TF1.floor(start) - 30 * TF1.ms
        settings = make_settings(sim, symbols="BTC/USDT", timeframes="1m", since=iso(since),
                                 mode="ws", funding=False, heartbeat=1)  # fmt: skip
        await collect_for(settings, 9.0)
        store = Store(settings.data_dir)
        assert_exact(store, sim, "BTC-USDT", "1m", since, midnight + TF1.ms)
        names = sorted(p.name for p in (settings.data_dir / "candles/BTC-USDT/1m").glob("*"))
        assert iso(since)[:7] == iso(midnight)[:7]  # (one month, the newest: in day files)
        days = sorted({f"{iso(since)[:10]}.parquet", f"{iso(midnight)[:10]}.parquet"})
        assert names == [".lock", ".series.json", *days]
        assert not list((settings.data_dir / "journal").rglob("*.parquet"))
