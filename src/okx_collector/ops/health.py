"""Is the collector keeping up? Snapshots of a run, and the freshness rule /health applies.

A series is fresh while its newest stored candle closed within `FRESH_BARS` bars of the exchange's
now: a 1m series whose last candle closed 2 minutes ago has missed one close already, and a second
one is late. The rules are pure functions of a `Snapshot`, which `take` reads off the collector on
the event loop (so that nothing else reads the collector's dicts while the loop changes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from okx_collector.live.collector import Collector
    from okx_collector.live.writer import Kind

FRESH_BARS = 2  # a series is stale once its last candle closed longer ago than this many bars
LISTED_STALE = 20  # stale series named in a /health answer (the count is always complete)
COUNTERS = ("reconnects", "fallbacks", "catchups", "refused", "delisted", "listed")
# The kinds a refusal is counted under (`refused` split), each exposed even at 0.
REFUSAL_KINDS: tuple[Kind, ...] = (
    "candles", "funding", "mark_candles", "index_candles", "open_interest"
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SeriesView:
    inst_id: str
    timeframe: str
    tf_ms: int
    last_close_ms: int | None  # when the newest stored candle closed (exchange ms), if any
    polling: bool  # served by REST polling now, not by the websocket

    @property
    def key(self) -> str:
        return f"{self.inst_id} {self.timeframe}"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the collector looks like at `now_ms` (exchange time)."""

    now_ms: int
    live_since_ms: int  # exchange time the collector went live (ages of empty series count from it)
    series: tuple[SeriesView, ...]
    counters: dict[str, int]  # the collector's totals since start (COUNTERS)
    queue_items: int  # items waiting in the writer's queue
    dropped_items: int  # items the writer shed because its queue was full
    bad_rows: int  # rows from OKX that did not parse
    writer_failed: bool
    refusals: dict[str, int] = field(default_factory=dict)  # `refused` by kind (REFUSAL_KINDS)


def take(collector: Collector, live_since_ms: int) -> Snapshot:
    """Read a snapshot off a running collector (on the event loop)."""
    now = collector.clock.now()
    series = tuple(
        SeriesView(
            state.inst.inst_id,
            state.tf.name,
            state.tf.ms,
            None if state.last_closed is None else state.last_closed + state.tf.ms,
            state.polling,
        )
        for state in collector.states.values()
    )
    counts = collector.counters
    return Snapshot(
        now_ms=now,
        live_since_ms=live_since_ms,
        series=series,
        counters={name: int(getattr(counts, name)) for name in COUNTERS},
        queue_items=collector.writer.backlog,
        dropped_items=collector.writer.stats.dropped,
        bad_rows=collector.exchange.bad_rows.count,
        writer_failed=collector.writer.failure is not None,
        refusals={kind: counts.refused_kinds.get(kind, 0) for kind in REFUSAL_KINDS},
    )


def age_ms(view: SeriesView, snap: Snapshot) -> int:
    """Exchange ms since the newest stored candle closed (since going live, if none is stored)."""
    reference = view.last_close_ms if view.last_close_ms is not None else snap.live_since_ms
    return max(0, snap.now_ms - reference)


def is_fresh(view: SeriesView, snap: Snapshot) -> bool:
    return age_ms(view, snap) <= FRESH_BARS * view.tf_ms


def stale(snap: Snapshot) -> list[SeriesView]:
    """The stale series, the stalest first."""
    out = [view for view in snap.series if not is_fresh(view, snap)]
    out.sort(key=lambda v: age_ms(v, snap) / v.tf_ms, reverse=True)
    return out


def health(snap: Snapshot | None) -> tuple[int, dict[str, Any]]:
    """The /health answer: (HTTP status, JSON body). 200 only while every series is fresh."""
    if snap is None:
        return 503, {"status": "starting", "detail": "catching up before going live"}
    if snap.writer_failed:
        return 503, {"status": "failed", "detail": "a write failed; the collector is stopping"}
    late = stale(snap)
    body: dict[str, Any] = {
        "status": "stale" if late else "ok",
        "series": len(snap.series),
        "polling": sum(1 for v in snap.series if v.polling),
        "stale": len(late),
        "queue_items": snap.queue_items,
    }
    if late:
        body["stale_series"] = [
            {"series": v.key, "age_seconds": round(age_ms(v, snap) / 1000, 1)}
            for v in late[:LISTED_STALE]
        ]
    return (503 if late else 200), body


def progressing(snap: Snapshot) -> bool:
    """Whether the systemd watchdog is fed: the writer works and some series is fresh (or none
    is collected). Not "every series fresh", as /health: one instrument OKX stopped updating
    would then have the service restarted every watchdog period, which cannot help it; when
    nothing at all is fresh, the process is wedged or cut off, and a restart may help."""
    if snap.writer_failed:
        return False
    return not snap.series or any(is_fresh(v, snap) for v in snap.series)
