"""A writer's store, observed: rows written by kind and source, and close->disk delays.

Wrapped around the store the live writer writes to, so the writer itself needs no hook: a row
counts once its store call has returned, which is when it is durable (in the journal). Called on
the writer's thread; prometheus_client's instruments are thread-safe.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence
from typing import Any, Literal

from okx_collector.live.clock import ExchangeClock
from okx_collector.live.writer import WritableStore
from okx_collector.models import Candle, FundingObservation, FundingRate, OpenInterest, PriceCandle
from okx_collector.ops.metrics import SOURCE_LABEL, Metrics
from okx_collector.timeframes import Timeframe

PRICE_KIND = {"mark": "mark_candles", "index": "index_candles"}


class ObservedStore:
    """Delegates to `inner`; counts what each write call made durable."""

    def __init__(self, inner: WritableStore, metrics: Metrics, clock: ExchangeClock) -> None:
        self.inner = inner
        self._metrics = metrics
        self._clock = clock

    def write_candles_many(self, items: Sequence[tuple[str, Timeframe, Sequence[Candle]]]) -> int:
        written = self.inner.write_candles_many(items)
        self._observe("candles", items)
        return written

    def write_price_candles_many(
        self,
        price: Literal["mark", "index"],
        items: Sequence[tuple[str, Timeframe, Sequence[PriceCandle]]],
    ) -> int:
        written = self.inner.write_price_candles_many(price, items)
        self._observe(PRICE_KIND[price], items)
        return written

    def write_open_interest_many(
        self, items: Sequence[tuple[str, Timeframe, Sequence[OpenInterest]]]
    ) -> int:
        written = self.inner.write_open_interest_many(items)
        # A row's `ts` is the bar close it is the value at: its delay counts from there (at
        # least the collector's settle time after the close, for pushed values).
        self._observe("open_interest", items, opens=False)
        return written

    def write_funding_many(self, items: Sequence[tuple[str, Sequence[FundingRate]]]) -> int:
        written = self.inner.write_funding_many(items)
        self._count("funding", [row for _, rows in items for row in rows])
        return written

    def write_funding_live_many(
        self, items: Sequence[tuple[str, Sequence[FundingObservation]]]
    ) -> int:
        written = self.inner.write_funding_live_many(items)
        self._count("funding_live", [row for _, rows in items for row in rows])
        return written

    def _observe(
        self,
        kind: str,
        items: Sequence[tuple[str, Timeframe, Sequence[Candle | PriceCandle | OpenInterest]]],
        opens: bool = True,
    ) -> None:
        """Count the rows of `kind` by source; live ones also as close->disk delays (from `ts` +
        the timeframe for rows keyed by their open time, else from `ts`)."""
        try:
            now = self._clock.now()
        except RuntimeError:  # never synced: cannot happen once live, but never fail a write
            now = None
        # Real seconds: the exchange clock runs `rate` times real time (a fast simulator).
        per_ms = 1 / (1000 * (self._clock.rate or 1.0))
        sources: Tally[str] = Tally()
        delays: dict[str, list[float]] = {}
        for _, tf, rows in items:
            span = tf.ms if opens else 0
            for row in rows:
                sources[row.source] += 1
                if now is not None and row.source != "backfill":
                    delays.setdefault(row.source, []).append((now - row.ts - span) * per_ms)
        for source, count in sources.items():
            self._metrics.rows.labels(kind, SOURCE_LABEL.get(source, source)).inc(count)
        for source, values in delays.items():
            histogram = self._metrics.close_to_disk.labels(kind, SOURCE_LABEL.get(source, source))
            for value in values:
                histogram.observe(max(0.0, value))

    def _count(self, kind: str, rows: Sequence[FundingRate] | Sequence[FundingObservation]) -> None:
        sources = Tally(SOURCE_LABEL.get(row.source, row.source) for row in rows)
        for source, count in sources.items():
            self._metrics.rows.labels(kind, source).inc(count)

    def __getattr__(self, name: str) -> Any:
        # Anything the writer's protocol gains later reaches the store unobserved.
        return getattr(self.inner, name)
