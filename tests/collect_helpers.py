"""Helpers for live-collection tests: run the collector for a while, compare with the market."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from okx_collector.config import Settings
from okx_collector.live.collector import Collector
from okx_collector.live.run import collect_async
from okx_collector.simulator import Simulator
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe
from tests.conftest import fast_delays

COLUMNS = ("ts", "open", "high", "low", "close", "volume", "quote_volume")


def iso(ms: int) -> str:
    """An absolute --since, so that the test and the collector agree on where data starts."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


async def collect_for(settings: Settings, seconds: float, **kwargs: Any) -> Collector:
    stop = asyncio.Event()
    task = asyncio.create_task(
        collect_async(settings, stop, delays=fast_delays, rate_limit_scale=0, **kwargs)
    )
    await asyncio.sleep(seconds)
    stop.set()
    return await asyncio.wait_for(task, 10)


def stored_rows(store: Store, inst_id: str, tf: Timeframe) -> list[tuple[Any, ...]]:
    table = store.read_candles(inst_id, tf)
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
