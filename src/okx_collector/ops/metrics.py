"""Prometheus metrics of one collect run, in a registry of its own (docs/operations.md).

Two kinds of values. What the collector keeps anyway (per-series state, the heartbeat's totals,
the writer's queue) is read from a `Snapshot` when scraped, so the hot paths pay nothing for it.
What nobody counted before is counted where it happens: REST requests and answers by the
exchange's hook (`request`, `answer`), rows and close->disk delays by `ObservedStore` around the
writer's stores. Labels are bounded: series (what the run collects), endpoint (OKX's API paths,
capped), kind, source and status class (a few values each).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector as PromCollector

from okx_collector import __version__
from okx_collector.ops.health import REFUSAL_KINDS, Snapshot, age_ms, stale

NS = "okx_collector"
MAX_ENDPOINTS = 32  # distinct endpoint labels; further paths count as "other" (bounded series)
# close->disk seconds: a websocket close lands in well under a second, a polled one within the
# poll interval (60 s by default), a late one later.
DELAY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# The store's sources, as operators read them: "backfill" rows of a live run are its catch-ups.
SOURCE_LABEL: dict[str, str] = {"ws": "ws", "poll": "poll", "backfill": "catchup"}
COUNTER_HELP = {
    "reconnects": "Candle websocket connections lost and re-established.",
    "fallbacks": "Series switched from websocket pushes to REST polling (auto mode).",
    "catchups": "REST catch-ups run (after a reconnect, a missed close, or a poll).",
    "refused": "Subscriptions OKX refused (60018), by kind (candles, funding, mark_candles, "
    "index_candles, open_interest).",
    "delisted": "Instruments retired because OKX no longer lists them.",
    "listed": "Instruments added while running (selectors).",
}
COUNTER_NAMES = {
    "reconnects": "reconnects",
    "fallbacks": "fallbacks",
    "catchups": "catchups",
    "refused": "refusals",
    "delisted": "delistings",
    "listed": "listings",
}


def status_class(status: int) -> str:
    """An HTTP status as a bounded label: 429 on its own (OKX's rate limit), else NxX."""
    if status == 429:
        return "429"
    if 200 <= status < 600:
        return f"{status // 100}xx"
    return "other"


class Metrics:
    """The run's registry and its instruments; `render()` gives the text exposition."""

    def __init__(self) -> None:
        # No `*_created` gauge beside every counter: Prometheus does not need them, and they
        # would double the text of every labelled counter. (A process-wide switch; idempotent.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.snapshot: Snapshot | None = None  # set before each render, on the event loop
        self._endpoints: set[str] = set()
        self._lock = threading.Lock()  # renders run in a worker thread, one at a time
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes and friends
        self.rest_requests = Counter(
            f"{NS}_rest_requests", "REST requests sent to OKX (every attempt), by API path.",
            ["endpoint"], registry=self.registry,
        )  # fmt: skip
        self.rest_responses = Counter(
            f"{NS}_rest_responses",
            "REST answers by API path and HTTP status class (429: rate limited; 5xx: OKX "
            "failed); requests without an answer timed out or lost their connection.",
            ["endpoint", "code"], registry=self.registry,
        )  # fmt: skip
        self.rows = Counter(
            f"{NS}_rows_written",
            "Rows handed to the store and durable, by kind (candles, funding, funding_live, "
            "mark_candles, index_candles, open_interest) and source (ws, poll, catchup); a row "
            "fetched again counts again.",
            ["kind", "source"], registry=self.registry,
        )  # fmt: skip
        self.close_to_disk = Histogram(
            f"{NS}_close_to_disk_seconds",
            "From a candle's close (exchange clock) to its row being durable, live rows only, by "
            "kind (candles, mark_candles, index_candles; open_interest from the bar close its "
            "value is taken at) and source.",
            ["kind", "source"], buckets=DELAY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.registry.register(_SnapshotCollector(self))

    # -- the exchange's REST hook (ccxt's fetch, on the event loop) ------------------------------

    def _endpoint(self, url: str) -> str:
        path = urlsplit(url).path or "/"
        if path not in self._endpoints:
            if len(self._endpoints) >= MAX_ENDPOINTS:
                return "other"
            self._endpoints.add(path)
        return path

    def request(self, url: str) -> None:
        self.rest_requests.labels(self._endpoint(url)).inc()

    def answer(self, url: str, status: int) -> None:
        self.rest_responses.labels(self._endpoint(url), status_class(status)).inc()

    # -- exposition ------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition (blocking: reads /proc; call it from a worker thread)."""
        with self._lock:
            return generate_latest(self.registry)


class _SnapshotCollector(PromCollector):
    """Metrics read from the latest snapshot at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(f"{NS}_info", "okx-collector's version.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        snap = self._metrics.snapshot
        live = GaugeMetricFamily(f"{NS}_live", "1 once the collector is live (after start-up).")
        live.add_metric([], 0 if snap is None else 1)
        yield live
        if snap is None:
            return
        labels = ["inst_id", "timeframe"]
        age = GaugeMetricFamily(
            f"{NS}_series_last_candle_age_seconds",
            "Exchange-clock seconds since the newest stored candle of the series closed.",
            labels=labels,
        )
        polling = GaugeMetricFamily(
            f"{NS}_series_polling", "1 while the series is served by REST polling, 0 while "
            "websocket pushes serve it.", labels=labels,
        )  # fmt: skip
        for view in snap.series:
            age.add_metric([view.inst_id, view.timeframe], age_ms(view, snap) / 1000)
            polling.add_metric([view.inst_id, view.timeframe], 1 if view.polling else 0)
        yield age
        yield polling
        count = GaugeMetricFamily(f"{NS}_series", "Series collected now.")
        count.add_metric([], len(snap.series))
        yield count
        late = GaugeMetricFamily(
            f"{NS}_stale_series", "Series whose newest candle closed more than two bars ago."
        )
        late.add_metric([], len(stale(snap)))
        yield late
        for key, name in COUNTER_NAMES.items():
            if key == "refused":  # by kind; the name's sum is the heartbeat's `refused=` total
                counter = CounterMetricFamily(f"{NS}_{name}", COUNTER_HELP[key], labels=["kind"])
                for kind in REFUSAL_KINDS:
                    counter.add_metric([kind], snap.refusals.get(kind, 0))
            else:
                counter = CounterMetricFamily(f"{NS}_{name}", COUNTER_HELP[key])
                counter.add_metric([], snap.counters.get(key, 0))
            yield counter
        queue = GaugeMetricFamily(f"{NS}_writer_queue_items", "Items waiting for the writer.")
        queue.add_metric([], snap.queue_items)
        yield queue
        dropped = CounterMetricFamily(
            f"{NS}_writer_dropped_items",
            "Websocket items shed because the writer's queue was full (REST fetches them again).",
        )
        dropped.add_metric([], snap.dropped_items)
        yield dropped
        bad = CounterMetricFamily(f"{NS}_bad_rows", "Rows from OKX that did not parse (skipped).")
        bad.add_metric([], snap.bad_rows)
        yield bad
