"""The pure parts of the qlib export: calendar text, months, slot arrays, funding, manifest."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import numpy as np
import pytest

from okx_collector.qlib_export.arrays import (
    CANDLE_FIELDS,
    DEFAULT_FUNDING_INTERVAL_MS,
    Candles,
    Funding,
    bar_block,
    funding_block,
    summarize,
    total_gaps,
    vwap,
)
from okx_collector.qlib_export.calendar import (
    LINE_BYTES,
    calendar_bytes,
    calendar_chunks,
    format_lines,
    format_time,
    month_of,
    months_between,
)
from okx_collector.qlib_export.exporter import funding_source
from okx_collector.qlib_export.manifest import (
    FileEntry,
    FundingEntry,
    InstrumentEntry,
    Manifest,
    NotOurs,
    StaleManifest,
    TimeframeEntry,
    dumps,
    loads,
)
from okx_collector.timeframes import DAY_MS, HOUR_MS, MINUTE_MS

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def candles(ts: list[int] | np.ndarray, seed: int = 0) -> Candles:
    rng = np.random.default_rng(seed)
    t = np.asarray(ts, dtype=np.int64)
    cols = {f: rng.random(t.size) * 100 for f in CANDLE_FIELDS}
    return Candles(t, cols)


# -- calendar ---------------------------------------------------------------------------------


def test_format_lines_matches_strftime_across_edges() -> None:
    edges = [
        "1999-12-31T23:59:00",
        "2000-02-29T12:34:56",
        "2024-02-29T23:45:00",
        "2024-12-31T23:59:59",
        "2025-01-01T00:00:00",
        "2038-01-19T03:14:08",
        "2100-03-01T00:00:00",
    ]
    ts = np.array([ms(e) for e in edges], dtype=np.int64)
    lines = format_lines(ts).decode().splitlines(keepends=True)
    for line, e in zip(lines, edges, strict=True):
        assert line == datetime.fromisoformat(e).strftime("%Y-%m-%d %H:%M:%S") + "\n"
        assert len(line) == LINE_BYTES


def test_format_lines_random_against_datetime() -> None:
    rng = np.random.default_rng(7)
    ts = np.sort(rng.integers(0, 4_102_444_800, 2000)) * 1000
    got = format_lines(ts).decode().splitlines()
    want = [datetime.fromtimestamp(t / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S") for t in ts]
    assert got == want
    # The one-value formatter (instruments files, manifest) writes the same, sub-second ms too.
    assert [format_time(int(t) + int(t) % 997) for t in ts] == want


def test_calendar_is_every_bar_and_chunks_concatenate() -> None:
    whole = calendar_bytes(T0, 3000, MINUTE_MS)
    lines = whole.decode().splitlines()
    assert lines[0] == "2024-01-01 00:00:00" and lines[-1] == format_time(T0 + 2999 * MINUTE_MS)
    assert len(set(lines)) == 3000 and lines == sorted(lines)
    assert b"".join(calendar_chunks(T0, 0, 3000, MINUTE_MS, chunk=7)) == whole
    assert (
        b"".join(calendar_chunks(T0, 100, 3000, MINUTE_MS, chunk=64)) == whole[100 * LINE_BYTES :]
    )


def test_months() -> None:
    assert month_of(ms("2024-02-29T23:59:00")).key == "2024-02"
    got = months_between(ms("2023-11-15T00:00:00"), ms("2024-02-01T00:00:00"))
    assert [m.key for m in got] == ["2023-11", "2023-12", "2024-01", "2024-02"]
    assert got[1].start == ms("2023-12-01T00:00:00") and got[1].end == ms("2024-01-01T00:00:00")
    assert all(a.end == b.start for a, b in itertools.pairwise(got))


# -- arrays -----------------------------------------------------------------------------------


def test_bar_block_places_each_candle_in_its_slot_and_nan_elsewhere() -> None:
    step = 15 * MINUTE_MS
    ts = [T0 + step * i for i in (0, 1, 4, 9)]
    c = candles(ts)
    block = bar_block(c, T0, 10, step)
    for field in CANDLE_FIELDS:
        arr = block[field]
        assert arr.dtype == np.float32 and arr.size == 10
        np.testing.assert_array_equal(arr[[0, 1, 4, 9]], c.columns[field].astype(np.float32))
        assert np.isnan(arr[[2, 3, 5, 6, 7, 8]]).all()
    with pytest.raises(ValueError, match="outside"):
        bar_block(c, T0 + step, 10, step)


def test_vwap_is_nan_without_volume() -> None:
    got = vwap(np.array([2.0, 0.0, 4.0]), np.array([10.0, 0.0, 2.0]))
    np.testing.assert_array_equal(got[[0, 2]], [5.0, 0.5])
    assert np.isnan(got[1])


def test_funding_block_forward_fills_from_each_settlement() -> None:
    step = HOUR_MS
    times = np.array([T0 + 8 * HOUR_MS, T0 + 16 * HOUR_MS, T0 + 24 * HOUR_MS], dtype=np.int64)
    rates = np.array([0.001, -0.002, 0.003])
    got = funding_block(Funding(times, rates), T0, 40, step)
    assert np.isnan(got[:8]).all()  # before the first settlement
    np.testing.assert_array_equal(got[8:16], np.float32(0.001))  # a bar at 08:00 gets 08:00's
    np.testing.assert_array_equal(got[16:24], np.float32(-0.002))
    np.testing.assert_array_equal(got[24:32], np.float32(0.003))  # in force until the next
    assert np.isnan(got[32:]).all()  # the next settlement (32:00) is not in the store yet


def test_funding_horizon_single_settlement_and_block_offsets() -> None:
    f = Funding(np.array([T0], dtype=np.int64), np.array([0.5]))
    assert f.horizon == T0 + DEFAULT_FUNDING_INTERVAL_MS
    assert Funding(np.empty(0, np.int64), np.empty(0)).horizon is None
    whole = funding_block(f, T0 - 60 * MINUTE_MS, 600, MINUTE_MS)
    part = funding_block(f, T0 + 100 * MINUTE_MS, 50, MINUTE_MS)
    np.testing.assert_array_equal(whole[160:210], part)
    assert np.isnan(funding_block(Funding(np.empty(0, np.int64), np.empty(0)), T0, 5, 1)).all()


def test_funding_digest_prefix() -> None:
    f = Funding(np.array([1, 2, 3], dtype=np.int64), np.array([0.1, 0.2, 0.3]))
    g = Funding(np.array([1, 2], dtype=np.int64), np.array([0.1, 0.2]))
    assert f.digest(2) == g.digest() != f.digest()


def test_summaries_and_gaps() -> None:
    step = MINUTE_MS
    a = summarize(candles([T0, T0 + step, T0 + 5 * step]), step)  # one gap inside
    b = summarize(candles([T0 + 6 * step, T0 + 9 * step], seed=1), step)  # one inside
    c = summarize(candles([T0 + 20 * step], seed=2), step)
    assert a is not None and b is not None and c is not None
    assert (a.rows, a.gaps, a.first, a.last) == (3, 1, T0, T0 + 5 * step)
    assert total_gaps([a, b], step) == 2  # a.last -> b.first is contiguous
    assert total_gaps([a, b, c], step) == 3
    assert summarize(Candles.empty(), step) is None
    assert a == summarize(candles([T0, T0 + step, T0 + 5 * step]), step)
    assert a != summarize(candles([T0, T0 + step, T0 + 5 * step], seed=9), step)


def test_funding_source_mapping() -> None:
    funded = {"BTC-USDT-SWAP", "ETH-USD-SWAP"}
    assert funding_source("BTC-USDT-SWAP", funded) == "BTC-USDT-SWAP"
    assert funding_source("BTC-USDT", funded) == "BTC-USDT-SWAP"
    assert funding_source("ETH-USDT", funded) is None
    assert funding_source("BTC-USD-250328", funded) is None


# -- manifest ---------------------------------------------------------------------------------


def _manifest() -> Manifest:
    month = summarize(candles([T0, T0 + MINUTE_MS]), MINUTE_MS)
    assert month is not None
    inst = InstrumentEntry(
        first=T0,
        last=T0 + MINUTE_MS,
        start_index=0,
        bars=2,
        rows=2,
        gaps=0,
        months={"2024-01": month},
        funding=FundingEntry("BTC-USDT-SWAP", 3, T0, T0 + DAY_MS, "ab" * 32),
        files={"features/btc-usdt/close.1min.bin": FileEntry(12, "cd" * 32)},
    )
    tf = TimeframeEntry(
        freq="1min",
        store="/data",
        first=T0,
        last=T0 + MINUTE_MS,
        files={"calendars/1min.txt": FileEntry(40, "ef" * 32)},
        instruments={"BTC-USDT": inst},
    )
    return Manifest(version="0.1.0", timeframes={"1m": tf}, files={})


def test_manifest_round_trip_is_deterministic() -> None:
    m = _manifest()
    data = dumps(m, {"1m": MINUTE_MS})
    assert loads(data) == m
    assert dumps(loads(data), {"1m": MINUTE_MS}) == data
    doc = json.loads(data)
    assert list(doc) == sorted(doc)
    inst = doc["timeframes"]["1m"]["instruments"]["BTC-USDT"]
    assert inst["first"] == "2024-01-01 00:00:00" and inst["missing"] == 0
    assert doc["timeframes"]["1m"]["calendar"]["bars"] == 2


def test_manifest_not_ours_or_stale() -> None:
    with pytest.raises(NotOurs):
        loads(b"{not json")
    with pytest.raises(NotOurs):
        loads(b'{"format": "something-else"}')
    with pytest.raises(StaleManifest):
        loads(b'{"format": "okx-collector-qlib", "format_version": 999}')
    with pytest.raises(StaleManifest):
        loads(b'{"format": "okx-collector-qlib", "format_version": 1, "timeframes": 3}')
