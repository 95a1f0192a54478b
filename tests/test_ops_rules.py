"""The pure parts of operations: freshness, the /health answer, the watchdog rule, labels,
and the metrics settings."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from okx_collector.config import build_settings
from okx_collector.errors import BadInput
from okx_collector.ops.health import LISTED_STALE, SeriesView, Snapshot, health, progressing
from okx_collector.ops.metrics import MAX_ENDPOINTS, Metrics, status_class

MIN = 60_000
NOW = 1_000 * MIN


def view(inst_id: str, last_close_ago_bars: float | None, tf_ms: int = MIN) -> SeriesView:
    close = None if last_close_ago_bars is None else NOW - int(last_close_ago_bars * tf_ms)
    return SeriesView(inst_id, "1m" if tf_ms == MIN else "1h", tf_ms, close, polling=False)


def snap(*series: SeriesView, live_since: int = NOW - 10 * MIN, failed: bool = False) -> Snapshot:
    return Snapshot(NOW, live_since, series, {}, 0, 0, 0, failed)


@pytest.mark.parametrize(
    ("bars_ago", "fresh"),
    [(0.0, True), (1.0, True), (1.99, True), (2.0, True), (2.01, False), (30.0, False)],
)
def test_fresh_within_two_bars(bars_ago: float, fresh: bool) -> None:
    status, body = health(snap(view("A", bars_ago)))
    assert (status == 200) is fresh
    assert body["stale"] == (0 if fresh else 1)


def test_two_bars_of_the_series_own_timeframe() -> None:
    # 90 minutes: stale for a 1m series, fresh for a 1h one.
    status, body = health(snap(view("A", 90.0), view("B", 1.5, tf_ms=60 * MIN)))
    assert status == 503
    assert [s["series"] for s in body["stale_series"]] == ["A 1m"]
    assert body["stale_series"][0]["age_seconds"] == 90 * 60


def test_an_empty_series_counts_from_going_live() -> None:
    assert health(snap(view("A", None), live_since=NOW - MIN))[0] == 200
    assert health(snap(view("A", None), live_since=NOW - 3 * MIN))[0] == 503


def test_stale_list_is_capped_and_stalest_first() -> None:
    series = [view(f"S{i:03d}", 3.0 + i) for i in range(LISTED_STALE + 5)]
    status, body = health(snap(*series))
    assert status == 503 and body["stale"] == LISTED_STALE + 5
    names = [s["series"] for s in body["stale_series"]]
    assert len(names) == LISTED_STALE and names[0] == f"S{LISTED_STALE + 4:03d} 1m"


def test_starting_and_failed_are_503() -> None:
    assert health(None) == (503, {"status": "starting", "detail": "catching up before going live"})
    assert health(snap(view("A", 0.5), failed=True))[1]["status"] == "failed"


@pytest.mark.parametrize(
    ("series", "failed", "fed"),
    [
        ((), False, True),  # nothing to collect: nothing can be late
        ((0.5, 0.5), False, True),
        ((0.5, 50.0), False, True),  # one stale instrument: a restart cannot help it
        ((50.0, 50.0), False, False),  # nothing fresh: wedged or cut off
        ((0.5,), True, False),  # the writer failed
    ],
)
def test_watchdog_is_fed_while_something_progresses(
    series: tuple[float, ...], failed: bool, fed: bool
) -> None:
    views = [view(f"S{i}", bars) for i, bars in enumerate(series)]
    assert progressing(snap(*views, failed=failed)) is fed


@pytest.mark.parametrize(
    ("status", "label"),
    [
        (200, "2xx"),
        (204, "2xx"),
        (429, "429"),
        (404, "4xx"),
        (503, "5xx"),
        (520, "5xx"),
        (99, "other"),
    ],
)
def test_status_classes(status: int, label: str) -> None:
    assert status_class(status) == label


def test_endpoint_labels_are_paths_and_bounded() -> None:
    metrics = Metrics()
    metrics.request("http://127.0.0.1:1/api/v5/market/candles?instId=BTC-USDT&bar=1m")
    metrics.answer("http://127.0.0.1:1/api/v5/market/candles?instId=ETH-USDT&bar=1m", 429)
    for i in range(MAX_ENDPOINTS + 10):
        metrics.request(f"http://127.0.0.1:1/path/{i}")
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    requests = families["okx_collector_rest_requests"].samples
    endpoints = {s.labels["endpoint"] for s in requests}
    assert len(endpoints) == MAX_ENDPOINTS + 1  # the cap, and "other"
    assert "/api/v5/market/candles" in endpoints and "other" in endpoints
    answers = families["okx_collector_rest_responses"].samples
    assert [(s.labels, s.value) for s in answers] == [
        ({"endpoint": "/api/v5/market/candles", "code": "429"}, 1.0)
    ]
    # Two runs in one process: separate registries, separate counts.
    assert "okx_collector_rest_requests_total{" not in Metrics().render().decode()


def test_metrics_settings() -> None:
    settings = build_settings({}, env={"OKX_COLLECTOR_METRICS_PORT": "9464"})
    assert (settings.metrics_port, settings.metrics_host) == (9464, "127.0.0.1")
    assert build_settings({}, env={}).metrics_port is None
    flags = {"metrics_port": 0, "metrics_host": "::1"}
    assert build_settings(flags, env={}).metrics_host == "::1"
    for bad in ("abc", "-1", "65536", "80.5"):
        with pytest.raises(BadInput, match="--metrics-port must be a TCP port number"):
            build_settings({}, env={"OKX_COLLECTOR_METRICS_PORT": bad})
    with pytest.raises(BadInput, match="--metrics-host must be an address"):
        build_settings({"metrics_host": " "}, env={})
