"""The live derived series after a late loop, and their polling round, over real wires.

The loop runs on a stepped local clock: held still, it stalls (as behind a slow round of requests
or on a loaded machine) while the simulator's exchange time runs on; stepped, it resumes. Open
interest is then stored at every close it was late for, each equal to the simulator's value in
force at the close; a polling round over many series behind has several requests in flight per
endpoint, both endpoints at once (the simulator counts requests being answered at once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from okx_collector.config import Settings
from okx_collector.live.derived import OI_SETTLE_MS, OI_SETTLE_REAL_S, TICK_S, DerivedLive
from okx_collector.live.derived_oi import OI_CATCHUP_MS
from okx_collector.live.derived_poll import POLL_WORKERS
from okx_collector.live.writer import Writer
from okx_collector.localclock import SteppedClock
from okx_collector.session import open_session, open_store
from okx_collector.simulator import Simulator
from okx_collector.status import collect_status
from okx_collector.store import Store
from okx_collector.timeframes import MINUTE_MS, Timeframe
from tests.clock_helpers import logged, until
from tests.collect_helpers import iso
from tests.conftest import fast_delays

MakeSettings = Callable[..., Settings]
TF1 = Timeframe.parse("1m")
TF5 = Timeframe.parse("5m")
PERP = "BTC-USDT-SWAP"
OI_COLUMNS = ("ts", "oi_contracts", "oi_coin", "source")


@dataclass
class Run:
    sim: Simulator
    derived: DerivedLive
    local: SteppedClock
    store: Store

    async def resume(self) -> None:
        """One tick of the loop, then the local settling time: every close the loop was late
        for is taken."""
        await self.local.advance(TICK_S)
        await self.local.advance(OI_SETTLE_REAL_S + 2 * TICK_S)

    def open_interest(self, tf: Timeframe) -> dict[int, tuple[Any, ...]]:
        table = self.store.read_open_interest(PERP, tf)
        rows = zip(*(table.column(c).to_pylist() for c in OI_COLUMNS), strict=True)
        return {r[0]: r for r in rows}

    def want(self, close: int) -> tuple[int, float, float]:
        ts, contracts, coin, _ = self.sim.derived.open_interest_at(PERP, close)
        return ts, contracts, coin


@asynccontextmanager
async def live(
    make: MakeSettings, sim: Simulator, kinds: str, timeframes: str, mode: str, **flags: Any
) -> AsyncIterator[Run]:
    """A DerivedLive of `kinds` on a stepped local clock (it stands still until stepped) and
    the simulator's exchange time, its writer running; stopped and drained on exit."""
    settings = make(
        sim, timeframes=timeframes, since=iso(sim.now_ms() - MINUTE_MS), mode=mode,
        series=kinds, funding=False, **flags,
    )  # fmt: skip
    store = await asyncio.to_thread(open_store, settings.data_dir)
    session = await open_session(settings, store, rate_limit_scale=0, delays=fast_delays)
    local = SteppedClock()
    writer = Writer(store, sim.now_ms, local)
    derived = DerivedLive(
        session.exchange, store, writer, kinds.split(","), session.instruments,
        session.timeframes, sim.now_ms, mode=mode, poll_interval=1.0, delays=fast_delays,
        local=local,
    )  # fmt: skip
    stop = asyncio.Event()
    writing = asyncio.create_task(writer.run())
    running = asyncio.create_task(derived.run(stop, sim.now_ms() - MINUTE_MS))
    try:
        # The loop has begun (after the start-up catch-up): it stands until the clock moves.
        await until(lambda: hasattr(derived, "_oi_asked"), "the loop began", within=60)
        yield Run(sim, derived, local, store)
    finally:
        stop.set()
        # (stepped until it returns: the loop may be busy when a single step comes)
        await until(running.done, "the run stops", clock=local, step=0.5)
        await running
        await writer.stop()
        await until(writing.done, "the writer stops", clock=local, step=0.5)  # (it waits too)
        await writing
        await session.exchange.close()


async def test_a_late_loop_takes_open_interest_at_every_close_from_the_pushes(
    make_settings: MakeSettings,
) -> None:
    async with (
        Simulator(seed=61, speed=60.0, rate_limit_scale=0, push_interval=0.01) as sim,
        live(make_settings, sim, "oi", "1m", "ws", symbols="BTC/USDT:USDT") as run,
    ):
        await until(lambda: bool(run.derived.pushes.get(PERP)), "open-interest pushes")
        # The value in force at a close is known from the first close after the first push.
        first = TF1.ceil(run.derived.pushes[PERP][0].ts)
        late = first + 4 * TF1.ms  # the loop stalls across five closes
        await until(lambda: sim.now_ms() >= late + OI_SETTLE_MS, "five closes pass", within=60)
        await run.resume()
        await until(
            lambda: run.derived.rows["oi"] >= 5, "the closes taken", clock=run.local, step=TICK_S
        )
    got = run.open_interest(TF1)
    closes = range(first, max(got) + 1, TF1.ms)
    assert sorted(got) == list(closes)
    assert max(got) >= late
    for close in closes:
        assert got[close][:3] == run.want(close), close
        assert got[close][3] == "ws"


async def test_a_loop_late_beyond_the_catchup_leaves_a_gap_status_lists(
    make_settings: MakeSettings, caplog: Any
) -> None:
    caplog.set_level(logging.INFO, logger="okx_collector.collect")
    async with (
        Simulator(seed=62, speed=600.0, rate_limit_scale=0, push_interval=0.01) as sim,
        live(make_settings, sim, "oi", "1m", "ws", symbols="BTC/USDT:USDT") as run,
    ):
        await until(lambda: bool(run.derived.pushes.get(PERP)), "open-interest pushes")
        # On time first: the clock steps with the checks, and closes are taken as they come.
        await until(
            lambda: run.derived.rows["oi"] >= 2, "closes on time", clock=run.local, step=TICK_S
        )
        # Stalled for longer than a catch-up reaches back (the closes it had seen but not
        # taken yet are past its reach too when it resumes).
        stalled = run.derived._oi_settled["1m"]
        await until(
            lambda: sim.now_ms() >= stalled + OI_CATCHUP_MS + 5 * TF1.ms, "an hour passes",
            within=60,
        )  # fmt: skip
        reach = TF1.ceil(sim.now_ms() - OI_CATCHUP_MS)  # (about: the tick reads the time)
        on_time = run.derived.rows["oi"]
        await run.resume()
        await until(
            lambda: run.derived.rows["oi"] >= on_time + OI_CATCHUP_MS // TF1.ms - 1,
            "the catch-up", clock=run.local, step=TICK_S, within=60,
        )  # fmt: skip
    got = run.open_interest(TF1)
    before = max(c for c in got if c <= stalled)  # the last close taken before the stall
    assert sorted(c for c in got if c <= before) == list(range(min(got), before + 1, TF1.ms))
    after = sorted(c for c in got if c > before)
    lost = (after[0] - before) // TF1.ms - 1
    assert lost >= 5 and abs(after[0] - reach) <= TF1.ms, (lost, after[0], reach)
    # Every close the catch-up reaches is stored, equal to the simulator's.
    assert after == list(range(after[0], after[-1] + 1, TF1.ms))
    assert len(after) >= OI_CATCHUP_MS // TF1.ms - 1
    for close in after:
        assert got[close][:3] == run.want(close), close
    # The older ones are one gap: status lists it, and the log says how many and why.
    (found,) = [s for s in collect_status(run.store, sim.now_ms()) if s.kind == "open_interest"]
    assert [(g.start, g.end, g.missing) for g in found.coverage.gaps] == [
        (before + TF1.ms, after[0], lost)
    ]
    assert logged(caplog, f"open interest 1m: {lost} closes from")()
    assert logged(caplog, "a catch-up reaches back no further")()


async def test_a_late_loop_fills_the_closes_of_perpetuals_polled_over_rest(
    make_settings: MakeSettings, caplog: Any
) -> None:
    """Not streamed, a perpetual's current value tells only the newest close: the others come
    from OKX's history at 5m; at 1m, which OKX keeps none of, they are gaps, and logged."""
    caplog.set_level(logging.INFO, logger="okx_collector.collect")
    async with (
        Simulator(seed=63, speed=300.0, rate_limit_scale=0) as sim,
        live(make_settings, sim, "oi", "1m,5m", "poll", symbols="BTC/USDT:USDT") as run,
    ):
        asked = run.derived._oi_asked["5m"]
        late = asked + 3 * TF5.ms  # three 5m closes and fifteen 1m closes pass
        await until(lambda: sim.now_ms() >= late + OI_SETTLE_MS, "three closes pass", within=60)
        await run.local.advance(TICK_S)  # one look: the closes are asked for at once
        closes = range(asked + TF5.ms, run.derived._oi_asked["5m"] + 1, TF5.ms)
        assert len(closes) >= 3
        await until(lambda: run.derived.rows["oi"] >= len(closes), "the 5m closes")
        await until(logged(caplog, "OKX keeps no 1m history"), "the 1m gaps logged")
    got = run.open_interest(TF5)
    assert [c for c in sorted(got) if c > asked] == list(closes)
    for close in closes:
        assert got[close][:3] == run.want(close), close
    assert logged(caplog, "open interest 1m: the loop was")()


async def test_a_polling_round_overlaps_its_requests_on_both_endpoints(
    make_settings: MakeSettings,
) -> None:
    perps = 4 * POLL_WORKERS
    async with (
        Simulator(seed=64, speed=60.0, rate_limit_scale=0, extra_instruments=perps) as sim,
        live(
            make_settings, sim, "mark,index", "1m", "poll",
            symbols=",".join(f"SIM{i:04d}/USDT:USDT" for i in range(1, perps + 1)),
        ) as run,
    ):  # fmt: skip
        keys = list(run.derived.last)
        assert len(keys) == 2 * perps  # a mark and an index series per perpetual

        def caught_up() -> bool:
            due = TF1.floor(sim.now_ms()) - TF1.ms
            return all((run.derived.last[k] or 0) >= due for k in keys)

        # The first rounds bring every series up to now (a round each local second).
        await until(caught_up, "the first rounds", within=60, clock=run.local, step=1.0)
        # Held still, the loop's next round finds every series two closes behind.
        start = TF1.floor(sim.now_ms())
        await until(lambda: sim.now_ms() >= start + 2 * TF1.ms, "two closes pass", within=60)
        sim.faults.rest_latency_ms = 50  # a round trip: the requests of a round overlap
        routes = ("market/mark-price-candles", "market/index-candles")
        asked = sum(sim.stats.rest_by_route.get(r, 0) for r in routes)
        sim.stats.reset_peaks()
        await run.local.advance(1.0)  # the poll interval: the round begins

        def requests() -> int:
            return sum(sim.stats.rest_by_route.get(r, 0) for r in routes) - asked

        await until(lambda: requests() >= 2 * perps, "a request per series", within=60)
        # One request per series (two candles each), POLL_WORKERS at once per endpoint, the two
        # endpoints at once: the round takes requests / (2 x POLL_WORKERS) round trips, not one
        # per request.
        peaks = [sim.stats.rest_peak_by_route.get(r, 0) for r in routes]
        assert (peaks, sim.stats.rest_peak) == ([POLL_WORKERS, POLL_WORKERS], 2 * POLL_WORKERS)
        await until(caught_up, "the round")
        assert requests() == 2 * perps
