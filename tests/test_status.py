"""`status`: coverage collected from a store, rendered as a table, and round-tripped as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from okx_collector.models import Candle, FundingRate
from okx_collector.status import (
    collect_status,
    human_duration,
    iso,
    render_status,
    status_from_json,
    status_to_json,
)
from okx_collector.store import Store
from okx_collector.store.lifecycle import record_delisted
from okx_collector.timeframes import HOUR_MS, MINUTE_MS, Timeframe

M15 = Timeframe.parse("15m")
H1 = Timeframe.parse("1h")
T0 = int(datetime(2026, 1, 31, 20, 0, tzinfo=UTC).timestamp() * 1000)


def candles(tf: Timeframe, idx: list[int]) -> list[Candle]:
    return [Candle(T0 + i * tf.ms, 1.0, 2.0, 0.5, 1.5, 1.0, 1.0, "backfill") for i in idx]


def make_store(tmp_path: Path) -> Store:
    store = Store(tmp_path)
    store.write_candles("BTC-USDT", M15, candles(M15, [0, 1, 2, 5, 6, 20]))  # crosses into Feb
    store.write_candles("ETH-USDT", H1, candles(H1, [0, 1, 2, 3]))
    h8 = 8 * HOUR_MS
    store.write_funding(
        "BTC-USDT-SWAP",
        [FundingRate(T0 + k * h8, 1e-4, 1e-4, "backfill") for k in (0, 1, 2, 4)],
    )
    return store


NOW = T0 + 21 * M15.ms + 3 * MINUTE_MS


def test_collect_status(tmp_path: Path) -> None:
    statuses = collect_status(make_store(tmp_path), NOW)
    assert [s.name for s in statuses] == ["BTC-USDT 15m", "ETH-USDT 1h", "BTC-USDT-SWAP funding"]
    btc, eth, fund = (s.coverage for s in statuses)
    assert btc.largest_gap is not None and btc.largest_gap.missing == 13
    assert (btc.rows, btc.gap_count, btc.missing) == (6, 2, 15)
    assert btc.age_ms == 3 * MINUTE_MS and btc.behind == 0
    assert (eth.rows, eth.gap_count, eth.first, eth.last) == (4, 0, T0, T0 + 3 * HOUR_MS)
    # NOW is T0 + 5h18m: the T0+4h candle closed at T0+5h and is not stored yet.
    assert eth.behind == 1 and eth.age_ms == 78 * MINUTE_MS
    assert fund.step_ms == 8 * HOUR_MS and fund.missing == 1
    assert statuses[2].timeframe is None and statuses[2].kind == "funding"


def test_render_table(tmp_path: Path) -> None:
    statuses = collect_status(make_store(tmp_path), NOW)
    console = Console(record=True, width=160)
    render_status(statuses, console)
    text = console.export_text()
    assert "times UTC, 2026" in text
    for expected in (
        "series",
        "max gap",
        "BTC-USDT 15m",
        "BTC-USDT-SWAP fund",
        "01-31 20:00",
    ):
        assert expected in text
    assert "3h 15m (13)" in text  # BTC's largest gap: 13 candles of 15m
    empty = Console(record=True, width=160)
    render_status([], empty)
    assert "no series" in empty.export_text()


def test_json_round_trip(tmp_path: Path) -> None:
    statuses = collect_status(make_store(tmp_path), NOW)
    text = status_to_json(statuses)
    doc = json.loads(text)
    assert doc["version"] == 1
    first = doc["series"][0]
    assert list(first) == [
        "series", "kind", "inst_id", "timeframe", "interval_ms", "now_ms", "now", "first_ms",
        "first", "last_ms", "last", "rows", "gap_count", "missing", "largest_gap_missing",
        "largest_gap_ms", "age_ms", "behind", "gaps", "delisted_ms", "delisted", "stale",
    ]  # fmt: skip
    assert first["first"] == "2026-01-31T20:00:00Z" and first["first_ms"] == T0
    assert first["gaps"][0] == {
        "start_ms": T0 + 3 * M15.ms,
        "start": iso(T0 + 3 * M15.ms),
        "end_ms": T0 + 5 * M15.ms,
        "end": iso(T0 + 5 * M15.ms),
        "missing": 2,
    }
    assert status_from_json(text) == statuses
    assert status_to_json(status_from_json(text)) == text
    assert json.loads(status_to_json([])) == {"version": 1, "series": []}


def test_formatting_helpers() -> None:
    assert iso(None) is None
    assert iso(1_500) == "1970-01-01T00:00:01.500Z"
    assert [human_duration(x) for x in (None, 0, 500, 45_000, 12 * MINUTE_MS, 195 * MINUTE_MS)] == [
        "—", "0s", "500ms", "45s", "12m", "3h 15m",
    ]  # fmt: skip
    assert human_duration(2 * 24 * HOUR_MS + 4 * HOUR_MS) == "2d 4h"
    assert human_duration(-5 * MINUTE_MS) == "-5m"


def test_a_delisted_series_is_shown_as_delisted_not_stale(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    record_delisted(store.data_dir, "BTC-USDT", NOW - 3_600_000)
    statuses = collect_status(store, NOW)
    btc = [s for s in statuses if s.inst_id == "BTC-USDT"]
    assert btc and all(s.delisted_ms == NOW - 3_600_000 for s in btc)
    assert all(s.delisted_ms is None for s in statuses if s.inst_id != "BTC-USDT")
    console = Console(record=True, width=160)
    render_status(statuses, console)
    day = datetime.fromtimestamp((NOW - 3_600_000) / 1000, UTC).strftime("%Y-%m-%d")
    assert f"delisted {day}" in console.export_text()
    doc = json.loads(status_to_json(statuses))
    row = next(r for r in doc["series"] if r["inst_id"] == "BTC-USDT")
    assert row["delisted_ms"] == NOW - 3_600_000
    assert status_from_json(status_to_json(statuses)) == statuses
