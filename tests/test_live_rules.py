"""The live collector's pure rules, as tables: staleness, the catch-up retry hold, what is due."""

from __future__ import annotations

import pytest

from okx_collector.instruments import Instrument
from okx_collector.live.series import SeriesState, retry_hold_seconds, stale_after_ms
from okx_collector.timeframes import MINUTE_MS, Timeframe

BTC = Instrument("BTC/USDT", "BTC-USDT", True, quote="USDT")


@pytest.mark.parametrize(
    ("failures", "hold"), [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (50, 60.0)]
)
def test_retry_hold_grows_and_is_capped(failures: int, hold: float) -> None:
    assert retry_hold_seconds(failures) == hold


@pytest.mark.parametrize(
    ("tf", "stale_ms"), [("1m", 30_000), ("15m", 450_000), ("1h", 1_800_000), ("4h", 7_200_000)]
)
def test_stale_after_half_a_candle_and_at_least_30s(tf: str, stale_ms: int) -> None:
    assert stale_after_ms(Timeframe.parse(tf)) == stale_ms


def test_next_due_follows_the_store_then_the_listing_then_since() -> None:
    tf = Timeframe.parse("1m")
    state = SeriesState(BTC, tf, None, streamable=True)
    assert state.next_due(since=5 * MINUTE_MS) == 5 * MINUTE_MS
    state.start = 7 * MINUTE_MS  # a listing joined mid-run: from its first candle
    assert state.next_due(since=5 * MINUTE_MS) == 7 * MINUTE_MS
    state.stored(9 * MINUTE_MS)
    assert state.next_due(since=5 * MINUTE_MS) == 10 * MINUTE_MS
    assert not state.missing_closed(now=11 * MINUTE_MS - 1, since=0)
    assert state.missing_closed(now=11 * MINUTE_MS, since=0)
