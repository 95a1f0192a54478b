"""Live open interest on a stepped local clock, over real wires: the value at a close is taken
from the pushes OI_SETTLE_REAL_S of the collector's local time after the close settled in
exchange time, not of the loop's, and it is the simulator's value in force at the close."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from okx_collector.config import Settings
from okx_collector.live.derived import OI_SETTLE_MS, OI_SETTLE_REAL_S, TICK_S, DerivedLive
from okx_collector.live.writer import Writer
from okx_collector.localclock import SteppedClock
from okx_collector.session import open_session, open_store
from okx_collector.simulator import Simulator
from okx_collector.timeframes import MINUTE_MS, Timeframe
from tests.clock_helpers import stepped_run, until
from tests.collect_helpers import iso
from tests.conftest import fast_delays

MakeSettings = Callable[..., Settings]
SPEED = 30.0  # a 1m bar closes every 2 s of real time: the test steps within one bar
TF1 = Timeframe.parse("1m")
PERP = "BTC-USDT-SWAP"


async def test_open_interest_settles_on_the_local_clock(make_settings: MakeSettings) -> None:
    async with Simulator(seed=21, speed=SPEED, rate_limit_scale=0, push_interval=0.01) as sim:
        settings = make_settings(
            sim, symbols="BTC/USDT:USDT", timeframes="1m", since=iso(sim.now_ms() - MINUTE_MS),
            mode="ws", series="oi", funding=False,
        )  # fmt: skip
        store = await asyncio.to_thread(open_store, settings.data_dir)
        session = await open_session(settings, store, rate_limit_scale=0, delays=fast_delays)
        local = SteppedClock()  # exchange time is the simulator's own
        writer = Writer(store, sim.now_ms, local)
        derived = DerivedLive(
            session.exchange, store, writer, ["oi"], session.instruments, session.timeframes,
            sim.now_ms, mode="ws", poll_interval=3600.0, delays=fast_delays, local=local,
        )  # fmt: skip
        since = sim.now_ms() - MINUTE_MS
        try:
            async with stepped_run(
                local, lambda stop: derived.run(stop, since), writer=writer, within=10.0
            ):
                await until(lambda: bool(derived.pushes.get(PERP)), "open-interest pushes")
                # The loop has run its first tick (it stands until the local clock moves): the
                # close it takes next is the first one OI_SETTLE_MS after that tick, and one
                # after the first push (the value in force at an earlier close is not known).
                first = derived.pushes[PERP][0].ts
                close = max(TF1.floor(sim.now_ms() - OI_SETTLE_MS), TF1.floor(first)) + TF1.ms
                await until(lambda: sim.now_ms() >= close + OI_SETTLE_MS, "the close settles")
                assert derived.sources.get("ws", 0) == 0
                await local.advance(TICK_S)  # the tick that sees the close settled
                await local.advance(OI_SETTLE_REAL_S - TICK_S)
                assert derived.sources.get("ws", 0) == 0, "taken before OI_SETTLE_REAL_S"
                await local.advance(2 * TICK_S)
                assert derived.sources.get("ws", 0) == 1
        finally:
            await session.exchange.close()
        table = store.read_open_interest(PERP, TF1)
        columns = ("ts", "oi_contracts", "oi_coin", "source")
        got = {r[0]: r for r in zip(*(table.column(c).to_pylist() for c in columns), strict=True)}
        want = sim.derived.open_interest_at(PERP, close)
        assert got[close] == (close, want[1], want[2], "ws")
