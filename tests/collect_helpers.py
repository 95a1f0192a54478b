"""Helpers for live-collection tests: run the collector until a condition holds, compare with the
market."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from okx_collector.config import Settings
from okx_collector.live.collector import Collector
from okx_collector.live.run import collect_async
from okx_collector.simulator import Simulator
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe
from tests.conftest import fast_delays
from tests.crash_helpers import iso as iso  # re-exported: many tests import it from here

COLUMNS = ("ts", "open", "high", "low", "close", "volume", "quote_volume")


async def run_with(
    settings: Settings, script: Callable[[], Awaitable[object]], **kwargs: Any
) -> Collector:
    """Collect while `script` runs, stop when it returns; the finished collector (its counters).

    The script waits on conditions (clock_helpers.until, until_holds): what the test needs,
    reached rather than timed, so that a loaded machine's slow start-up or stop changes nothing
    but the duration. A collector that ends first fails the test with its own error, not with
    the script's timeout."""
    stop = asyncio.Event()
    collecting = asyncio.create_task(
        collect_async(settings, stop, delays=fast_delays, rate_limit_scale=0, **kwargs)
    )
    playing = asyncio.ensure_future(script())
    try:
        await asyncio.wait({collecting, playing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
    if not playing.done():
        playing.cancel()
        await asyncio.wait({playing})
        collector = collecting.result()  # raises the collector's error, if it had one
        raise AssertionError(f"the collector stopped by itself: {collector.totals_line()}")
    try:
        playing.result()
    finally:  # the script's failure too: the collector stops before the simulator does
        collector = await asyncio.wait_for(collecting, 30)
    return collector


def stored_rows(
    store: Store, inst_id: str, tf: Timeframe, start: int | None = None, end: int | None = None
) -> list[tuple[Any, ...]]:
    """The stored candles of [start, end) as the market's tuples (every column but `source`)."""
    table = store.read_candles(inst_id, tf, start, end)
    return list(zip(*(table.column(c).to_pylist() for c in COLUMNS), strict=True))


def assert_exact(store: Store, sim: Simulator, inst_id: str, tf_name: str, since: int,
                 min_end: int) -> list[str]:  # fmt: skip
    """Stored == the market's closed candles from `since` to the last stored one, which is at
    least `min_end`; no duplicates, no candle that had not closed. Returns the sources."""
    tf = Timeframe.parse(tf_name)
    rows = stored_rows(store, inst_id, tf)
    assert rows, f"nothing stored for {inst_id} {tf_name}"
    last = rows[-1][0]
    assert last >= min_end, f"{inst_id} {tf_name}: last stored {last} < expected {min_end}"
    assert last + tf.ms <= sim.now_ms(), "an unclosed candle was stored"
    expected = [
        tuple(r) for r in sim.market.candles(inst_id, tf_name, tf.ceil(since), last + tf.ms)
    ]
    assert rows == expected, _diff(rows, expected, store.read_candles(inst_id, tf))
    table = store.read_candles(inst_id, tf)
    return list(table.column("source").to_pylist())


def _diff(rows: list[tuple[Any, ...]], expected: list[tuple[Any, ...]], table: Any) -> str:
    """The first differing candles, with their stored source, for a readable failure."""
    sources = dict(zip(table.column("ts").to_pylist(), table.column("source").to_pylist(),
                       strict=True))  # fmt: skip
    got = {r[0]: r for r in rows}
    want = {r[0]: r for r in expected}
    lines = []
    for ts in sorted(set(got) | set(want)):
        if got.get(ts) != want.get(ts):
            around = [sources.get(t) for t in sorted(got) if abs(t - ts) <= 2 * 60_000]
            lines.append(
                f"ts {ts}: stored {got.get(ts)} ({sources.get(ts)}), market {want.get(ts)}, "
                f"sources around: {around}"
            )
    return "\n".join(lines[:8]) + f"\n({len(lines)} differences)"


def stored_sources(
    store: Store, inst_id: str, tf: Timeframe, start: int | None = None
) -> list[str]:
    """The `source` of each stored candle from `start` on, oldest first."""
    return list(store.read_candles(inst_id, tf, start, None).column("source").to_pylist())
