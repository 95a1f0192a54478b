"""Live collection under faults: the dataset stays exact; auto mode falls back and returns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from okx_collector.config import Settings, parse_time_spec
from okx_collector.live.run import collect_async
from okx_collector.simulator import Simulator
from okx_collector.store import Store
from okx_collector.timeframes import MINUTE_MS, Timeframe
from tests.collect_helpers import assert_exact, iso
from tests.conftest import fast_delays

MakeSettings = Callable[..., Settings]
SPEED = 120.0  # a 1m candle closes every 0.5 s of real time
TF1 = Timeframe.parse("1m")
SYMBOLS = ("BTC-USDT", "ETH-USDT-SWAP")


def fault_settings(make_settings: MakeSettings, sim: Simulator, mode: str = "auto") -> Settings:
    since = iso(sim.now_ms() - 10 * MINUTE_MS)
    return make_settings(
        sim, symbols="BTC/USDT,ETH/USDT:USDT", timeframes="1m", since=since, mode=mode,
        poll_interval=0.3, heartbeat=0.5, funding=False,
    )  # fmt: skip


async def run_with(settings: Settings, script: Callable[[], object], **kwargs: object):  # type: ignore[no-untyped-def]
    """Collect while `script` (a coroutine function) plays faults; stop when it returns."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        collect_async(settings, stop, delays=fast_delays, rate_limit_scale=0, **kwargs)  # type: ignore[arg-type]
    )
    try:
        await script()  # type: ignore[misc]
    finally:
        stop.set()
    return await asyncio.wait_for(task, 10)


def check_exact(settings: Settings, sim: Simulator, started: int) -> None:
    store = Store(settings.data_dir)
    end = TF1.floor(sim.now_ms())
    since = parse_time_spec(settings.since or "", 0)
    for inst_id in SYMBOLS:
        assert_exact(store, sim, inst_id, "1m", since, end - 4 * TF1.ms)


async def test_dropped_connections_every_second(make_settings: MakeSettings) -> None:
    async with Simulator(seed=21, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        started = sim.now_ms()
        settings = fault_settings(make_settings, sim, "ws")

        async def script() -> None:
            await asyncio.sleep(1.0)
            sim.faults.ws_drop_after_s = 0.7
            await asyncio.sleep(4.0)
            sim.faults.ws_drop_after_s = 0.0
            await asyncio.sleep(1.5)

        collector = await run_with(settings, script)
        assert collector.counters.reconnects >= 3
        check_exact(settings, sim, started)


async def test_stalled_stream_auto_falls_back_and_returns(make_settings: MakeSettings) -> None:
    # 1m candles: stale after max(30 s, 30 s) = 30 simulated s = 0.25 s real at this speed.
    async with Simulator(seed=22, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        started = sim.now_ms()
        settings = fault_settings(make_settings, sim, "auto")
        polling_seen: list[int] = []

        async def script() -> None:
            await asyncio.sleep(1.5)
            sim.faults.stop_pushing = True
            await asyncio.sleep(3.0)
            polling_seen.append(sim.stats.ws_pushes)
            sim.faults.stop_pushing = False
            await asyncio.sleep(2.0)

        collector = await run_with(settings, script)
        assert collector.counters.fallbacks >= 2  # both series fell back
        assert all(not s.polling for s in collector.states.values())  # and came back
        store = Store(settings.data_dir)
        sources = store.read_candles("BTC-USDT", TF1).column("source").to_pylist()
        assert "poll" in sources and sources[-1] == "ws"
        check_exact(settings, sim, started)


async def test_withheld_pong_reconnects(make_settings: MakeSettings) -> None:
    async with Simulator(seed=23, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        started = sim.now_ms()
        settings = fault_settings(make_settings, sim, "ws")

        async def script() -> None:
            await asyncio.sleep(1.0)
            sim.faults.withhold_pong = True
            await asyncio.sleep(2.0)
            sim.faults.withhold_pong = False
            await asyncio.sleep(2.0)

        collector = await run_with(settings, script, keepalive_ms=300)
        assert collector.counters.reconnects >= 1
        check_exact(settings, sim, started)


async def test_malformed_frames_and_rest_errors(make_settings: MakeSettings) -> None:
    async with Simulator(seed=24, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        started = sim.now_ms()
        settings = fault_settings(make_settings, sim, "auto")

        async def script() -> None:
            await asyncio.sleep(1.0)  # the faults start once the collector is up
            sim.faults.update({"ws_malformed_share": 0.2, "rest_429_share": 0.3,
                               "rest_5xx_share": 0.2})  # fmt: skip
            await asyncio.sleep(3.0)
            sim.faults.ws_drop_after_s = 0.8  # reconnects force catch-ups through the REST errors
            await asyncio.sleep(2.0)
            sim.faults.reset()
            await asyncio.sleep(2.0)

        await run_with(settings, script)
        assert sim.stats.injected_429 > 0 and sim.stats.injected_5xx > 0
        check_exact(settings, sim, started)
