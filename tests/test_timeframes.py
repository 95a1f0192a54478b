"""Pure candle-time arithmetic: parsing, alignment, closed-ness and gap ranges."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from okx_collector.timeframes import (
    DAY_MS,
    HOUR_MS,
    MINUTE_MS,
    VALID_TIMEFRAMES,
    WEEK_MS,
    Timeframe,
    UnknownTimeframe,
    missing_ranges,
    parse_timeframes,
)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_valid_names_and_lengths() -> None:
    assert VALID_TIMEFRAMES == (
        "1m",
        "3m",
        "5m",
        "15m",
        "30m",
        "1h",
        "2h",
        "4h",
        "6h",
        "12h",
        "1d",
        "1w",
    )
    assert Timeframe.parse("15m") == Timeframe("15m", 15 * MINUTE_MS)
    assert Timeframe.parse(" 1h ").ms == HOUR_MS
    assert Timeframe.parse("1d").ms == DAY_MS and Timeframe.parse("1w").ms == WEEK_MS
    assert str(Timeframe.parse("4h")) == "4h"
    assert {Timeframe.parse(n).name.lower() for n in VALID_TIMEFRAMES} == set(VALID_TIMEFRAMES)


@pytest.mark.parametrize(
    ("name", "freq"),
    [("1m", "1min"), ("15m", "15min"), ("1h", "60min"), ("1d", "day"), ("1w", "week")],
)
def test_qlib_freq(name: str, freq: str) -> None:
    assert Timeframe.parse(name).qlib_freq == freq


@pytest.mark.parametrize("bad", ["1M", "15", "m15", "", "1y", "../1m"])
def test_unknown_timeframe(bad: str) -> None:
    with pytest.raises(UnknownTimeframe) as info:
        Timeframe.parse(bad)
    assert isinstance(info.value, ValueError)
    assert "valid timeframes: 1m, 3m" in str(info.value)


def test_unknown_timeframe_suggests() -> None:
    with pytest.raises(UnknownTimeframe, match="did you mean 15m"):
        Timeframe.parse("15min")


def test_parse_timeframes_dedupes_in_order() -> None:
    assert [t.name for t in parse_timeframes(["1h", "15m", "1h", " 15m"])] == ["1h", "15m"]


def test_floor_ceil_alignment() -> None:
    tf = Timeframe.parse("15m")
    t = ms("2026-03-01T10:07:30")
    assert tf.floor(t) == ms("2026-03-01T10:00:00")
    assert tf.ceil(t) == ms("2026-03-01T10:15:00")
    assert tf.ceil(tf.floor(t)) == tf.floor(t)
    assert tf.is_aligned(ms("2026-03-01T10:15:00")) and not tf.is_aligned(t)


def test_daily_and_weekly_are_utc_aligned() -> None:
    d1 = Timeframe.parse("1d")
    assert d1.floor(ms("2026-03-01T23:59:59")) == ms("2026-03-01T00:00:00")
    w1 = Timeframe.parse("1w")
    # Weeks open on Monday 00:00 UTC; 2026-03-02 is a Monday.
    assert w1.floor(ms("2026-03-05T12:00:00")) == ms("2026-03-02T00:00:00")
    assert w1.is_aligned(ms("2026-03-02T00:00:00"))
    assert not w1.is_aligned(ms("2026-03-05T00:00:00"))  # a Thursday, the epoch's weekday


def test_closed_and_last_closed() -> None:
    tf = Timeframe.parse("1h")
    open_ts = ms("2026-03-01T10:00:00")
    assert not tf.is_closed(open_ts, open_ts + HOUR_MS - 1)
    assert tf.is_closed(open_ts, open_ts + HOUR_MS)
    assert tf.last_closed(ms("2026-03-01T11:30:00")) == open_ts
    assert tf.last_closed(ms("2026-03-01T11:00:00")) == open_ts


def test_count_and_opens() -> None:
    tf = Timeframe.parse("15m")
    a, b = ms("2026-03-01T10:00:00"), ms("2026-03-01T11:00:00")
    assert tf.count(a, b) == 4 and list(tf.opens(a, b)) == [a + i * tf.ms for i in range(4)]
    assert tf.count(a + 1, b) == 3 and tf.opens(a + 1, b)[0] == a + tf.ms
    assert tf.count(b, a) == 0 and list(tf.opens(b, a)) == []


def test_missing_ranges() -> None:
    tf = Timeframe.parse("1m")
    s = 0
    present = [0, MINUTE_MS, 4 * MINUTE_MS, 9 * MINUTE_MS]
    assert list(missing_ranges(present, s, 10 * MINUTE_MS, tf)) == [
        (2 * MINUTE_MS, 4 * MINUTE_MS),
        (5 * MINUTE_MS, 9 * MINUTE_MS),
    ]
    assert list(missing_ranges([], 0, 3 * MINUTE_MS, tf)) == [(0, 3 * MINUTE_MS)]
    # Values outside [start, end) are ignored; the tail gap reaches `end`.
    assert list(missing_ranges([-MINUTE_MS, 0, 20 * MINUTE_MS], 0, 2 * MINUTE_MS, tf)) == [
        (MINUTE_MS, 2 * MINUTE_MS)
    ]


@given(
    st.sampled_from(VALID_TIMEFRAMES),
    st.integers(0, 4_000_000_000_000),
    st.sets(st.integers(0, 200), max_size=60),
)
def test_missing_ranges_cover_exactly_the_absent_opens(name: str, t: int, idx: set[int]) -> None:
    tf = Timeframe.parse(name)
    start = tf.floor(t)
    end = start + 200 * tf.ms
    present = sorted(start + i * tf.ms for i in idx if i < 200)
    absent: set[int] = set()
    for a, b in missing_ranges(present, start, end, tf):
        assert a < b and tf.is_aligned(a) and tf.is_aligned(b)
        absent.update(tf.opens(a, b))
    assert absent == set(tf.opens(start, end)) - set(present)


@given(st.sampled_from(VALID_TIMEFRAMES), st.integers(-(10**13), 10**13))
def test_floor_ceil_properties(name: str, t: int) -> None:
    tf = Timeframe.parse(name)
    f, c = tf.floor(t), tf.ceil(t)
    assert f <= t <= c and tf.is_aligned(f) and tf.is_aligned(c)
    assert c - f in (0, tf.ms)
    assert tf.floor(t) == tf.floor(f) and tf.is_closed(f, f + tf.ms)
