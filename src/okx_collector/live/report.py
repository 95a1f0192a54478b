"""The collector's log lines: the heartbeat (since the last one) and the totals at the end."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from okx_collector.live.collector import Collector

Beat = tuple[int, int, int, int]  # rows, reconnects, fallbacks, catch-ups at the last beat


def heartbeat_line(c: Collector, last: Beat) -> tuple[str, Beat]:
    """Mode, live and polling series, worst age; rows, reconnects, fallbacks since `last`."""
    now = c._now()
    states = list(c.states.values())
    live = sum(1 for s in states if s.streamable and not s.polling)
    ages = [now - (s.last_closed + s.tf.ms) for s in states if s.last_closed is not None]
    worst = f"{max(ages) / 1000:.0f}s" if ages else "n/a"
    latency = latency_text(c.writer.stats.take_delays(), c.clock.rate)
    totals = (
        c.writer.stats.rows_written,
        c.counters.reconnects,
        c.counters.fallbacks,
        c.counters.catchups,
    )
    rows, reconnects, fallbacks, catchups = (t - p for t, p in zip(totals, last, strict=True))
    return (
        f"mode={c.options.mode} live={live} polling={len(states) - live} "
        f"worst_age={worst} rows_written={rows} reconnects={reconnects} "
        f"fallbacks={fallbacks} catchups={catchups} queue={c.writer.backlog}{latency}"
    ), totals


def latency_text(delays: list[int], rate: float) -> str:
    """` close->disk p50 0.12s p99 0.17s` in real seconds.

    The delays are measured on the exchange's clock; against a simulator at `--speed 60` that
    clock runs 60 times faster, and 9.96 s of it is 0.17 s of the writer's real work. `rate`:
    exchange ms per real ms (ExchangeClock.rate, 1 against OKX).
    """
    if not delays:
        return ""
    scale = 1000.0 * (rate if rate > 0 else 1.0)
    return (
        f" close->disk p50 {statistics.median(delays) / scale:.2f}s p99 {p99(delays) / scale:.2f}s"
    )


def totals_line(c: Collector) -> str:
    """Counts since start, for the closing log line."""
    stats, counters = c.writer.stats, c.counters
    return (
        f"rows_written={stats.rows_written} ws_candles={counters.ws_candles} "
        f"reconnects={counters.reconnects} fallbacks={counters.fallbacks} "
        f"catchups={counters.catchups} refused={counters.refused} delisted={counters.delisted} "
        f"listed={counters.listed} dropped={stats.dropped}"
    )


def p99(values: list[int]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
