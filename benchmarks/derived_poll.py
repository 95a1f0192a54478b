"""One polling round of the live mark and index series, every series a few bars behind.

    python benchmarks/derived_poll.py [--perpetuals 100] [--latency-ms 100] [--behind 3]

A simulator at OKX's rate limits (each endpoint its own), a REST round trip of `--latency-ms`
added to every answer, `--perpetuals` perpetuals with a mark and an index series each (so twice
as many series), each `--behind` bars of 1m behind; the round (`DerivedLive._poll`, as the live
loop runs it) is timed, with the requests it made and the most the simulator answered at once.
Run it against another checkout (PYTHONPATH=<checkout>/src) to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Iterator

from okx_collector.config import build_settings
from okx_collector.live.derived import DerivedLive
from okx_collector.live.writer import Writer
from okx_collector.session import open_session, open_store
from okx_collector.simulator import Simulator
from okx_collector.timeframes import Timeframe

TF1 = Timeframe.parse("1m")


def fast_delays() -> Iterator[float]:
    while True:
        yield 0.01


async def main(perpetuals: int, latency_ms: float, behind: int) -> None:
    async with Simulator(seed=7, extra_instruments=perpetuals) as sim:
        with tempfile.TemporaryDirectory() as tmp:
            symbols = ",".join(f"SIM{i:04d}/USDT:USDT" for i in range(1, perpetuals + 1))
            settings = build_settings(
                {
                    "data_dir": tmp, "rest_url": sim.rest_url, "ws_url": sim.ws_url,
                    "symbols": symbols, "timeframes": "1m", "series": "mark,index",
                    "mode": "poll", "funding": False,
                },
                env={},
            )  # fmt: skip
            store = await asyncio.to_thread(open_store, settings.data_dir)
            session = await open_session(settings, store, delays=fast_delays)
            writer = Writer(store, sim.now_ms)
            derived = DerivedLive(
                session.exchange, store, writer, ["mark", "index"], session.instruments,
                session.timeframes, sim.now_ms, mode="poll", poll_interval=3600.0,
                delays=fast_delays,
            )  # fmt: skip
            await asyncio.to_thread(derived._plan, derived.instruments)
            now = sim.now_ms()
            for key in derived.last:
                derived.last[key] = TF1.floor(now) - (behind + 1) * TF1.ms
            sim.faults.rest_latency_ms = latency_ms
            writing = asyncio.create_task(writer.run())
            before = sim.stats.rest_requests
            sim.stats.reset_peaks()
            started = time.monotonic()
            await derived._poll(now, asyncio.Event())
            took = time.monotonic() - started
            requests = sim.stats.rest_requests - before
            await writer.stop()
            await writing
            await session.exchange.close()
            print(
                f"{len(derived.last)} series {behind} bars behind, {latency_ms:.0f} ms a round "
                f"trip: round {took:.1f} s, {requests} requests ({requests / took:.1f}/s), "
                f"{derived.rows['mark'] + derived.rows['index']} candles, at most "
                f"{sim.stats.rest_peak} answered at once {dict(sim.stats.rest_peak_by_route)}, "
                f"{sim.stats.rate_limited} refused"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--perpetuals", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--behind", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.perpetuals, args.latency_ms, args.behind))
