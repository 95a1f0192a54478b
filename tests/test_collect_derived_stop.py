"""A stop of a collect run with mark and index candles, over real wires: a polling round of many
series behind ends at the stop (not after a request for every series, nor after the series under
way: they are dropped whole), and what it fetched before is stored, equal to the simulator's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from okx_collector.config import Settings
from okx_collector.live.derived_poll import POLL_WORKERS
from okx_collector.live.run import collect_async
from okx_collector.simulator import Simulator
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe
from tests.clock_helpers import until
from tests.collect_helpers import iso
from tests.conftest import fast_delays

MakeSettings = Callable[..., Settings]
TF1 = Timeframe.parse("1m")
SERIES = 20
ROUTE = "market/mark-price-candles"
PAGES_PER_SERIES = 16  # an empty series is polled from a day back: 1,440 rows, 100 a page


async def test_a_stop_ends_the_poll_round_and_keeps_what_it_fetched(
    make_settings: MakeSettings,
) -> None:
    async with Simulator(seed=45, rate_limit_scale=0, extra_instruments=SERIES) as sim:
        # Nothing to catch up from `since`; every mark series is empty, so the first polling
        # round asks a day of each: SERIES x PAGES_PER_SERIES requests, POLL_WORKERS series at
        # a time.
        now = sim.now_ms()
        symbols = ",".join(f"SIM{i:04d}/USDT:USDT" for i in range(1, SERIES + 1))
        settings = make_settings(
            sim, symbols=symbols, timeframes="1m", since=iso(TF1.floor(now)), mode="poll",
            poll_interval=0.3, heartbeat=1, series="mark", funding=False,
        )  # fmt: skip
        stop = asyncio.Event()
        run = asyncio.create_task(
            collect_async(settings, stop, delays=fast_delays, rate_limit_scale=0)
        )

        def polled() -> int:
            return sim.stats.rest_by_route.get(ROUTE, 0)

        # One more series than the workers begun: at least one was fetched whole.
        begun = (POLL_WORKERS + 1) * PAGES_PER_SERIES
        await until(lambda: polled() >= begun, "the polling round fetched a series")
        stop.set()
        at_stop = polled()
        await asyncio.wait_for(run, 30)
        # No page is asked for after the stop but those the workers had sent (or were sending
        # in the same turn of the event loop); the series under way are dropped, not finished.
        assert polled() - at_stop <= 2 * POLL_WORKERS, (at_stop, polled())
        assert polled() < SERIES * PAGES_PER_SERIES
        # Every series fetched is stored whole, equal to the simulator's candles.
        store = Store(settings.data_dir)
        stored = 0
        for i in range(1, SERIES + 1):
            sid = f"SIM{i:04d}-USDT-SWAP"
            table = store.read_price_candles("mark", sid, TF1)
            if not table.num_rows:
                continue
            stored += 1
            columns = ("ts", "open", "high", "low", "close")
            got = list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))
            first, last = got[0][0], got[-1][0]
            assert len(got) >= 1439, (sid, len(got))  # a day, up to the last close
            want = sim.derived.mark_candles(sid, "1m", first, last + TF1.ms)
            assert got == [tuple(r) for r in want], sid
        # Stored series were fetched whole (none from a part of its pages).
        assert 1 <= stored <= polled() // PAGES_PER_SERIES, (stored, polled())
