"""Candle-time arithmetic: timeframe names, alignment, closed-ness and gap ranges.

Pure: no I/O, no asyncio, no ccxt. Every time is int milliseconds since the epoch, UTC.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
# OKX's weekly UTC bars (`1Wutc`) open on Monday 00:00 UTC; 1970-01-05 was the first Monday.
_WEEK_ORIGIN_MS = 4 * DAY_MS

# ccxt timeframe name -> (length in ms, qlib frequency name). Order is the user-facing order.
_TABLE: dict[str, tuple[int, str]] = {
    "1m": (MINUTE_MS, "1min"),
    "3m": (3 * MINUTE_MS, "3min"),
    "5m": (5 * MINUTE_MS, "5min"),
    "15m": (15 * MINUTE_MS, "15min"),
    "30m": (30 * MINUTE_MS, "30min"),
    "1h": (HOUR_MS, "60min"),
    "2h": (2 * HOUR_MS, "120min"),
    "4h": (4 * HOUR_MS, "240min"),
    "6h": (6 * HOUR_MS, "360min"),
    "12h": (12 * HOUR_MS, "720min"),
    "1d": (DAY_MS, "day"),
    "1w": (WEEK_MS, "week"),
}

VALID_TIMEFRAMES: tuple[str, ...] = tuple(_TABLE)


class UnknownTimeframe(ValueError):
    """A timeframe name that okx-collector does not support."""

    def __init__(self, name: str) -> None:
        self.name = name
        close = difflib.get_close_matches(name, VALID_TIMEFRAMES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        super().__init__(
            f"unknown timeframe {name!r}{hint}; valid timeframes: {', '.join(VALID_TIMEFRAMES)}"
        )


@dataclass(frozen=True, slots=True)
class Timeframe:
    """One candle length, with the calendar rules OKX applies to it (UTC-aligned)."""

    name: str  # ccxt name, also the directory name in the store ("15m")
    ms: int  # candle length

    @classmethod
    def parse(cls, name: str) -> Timeframe:
        key = name.strip()
        if key not in _TABLE:
            raise UnknownTimeframe(name)
        return cls(key, _TABLE[key][0])

    @property
    def qlib_freq(self) -> str:
        """qlib's frequency name, used in calendar and feature file names."""
        return _TABLE[self.name][1]

    @property
    def origin(self) -> int:
        """The epoch offset candles are aligned to (weeks open on Mondays)."""
        return _WEEK_ORIGIN_MS if self.name == "1w" else 0

    def floor(self, ts: int) -> int:
        """Open time of the candle containing `ts`."""
        return ts - (ts - self.origin) % self.ms

    def ceil(self, ts: int) -> int:
        """Open time of the first candle opening at or after `ts`."""
        f = self.floor(ts)
        return f if f == ts else f + self.ms

    def is_aligned(self, ts: int) -> bool:
        return (ts - self.origin) % self.ms == 0

    def is_closed(self, open_ts: int, now_ms: int) -> bool:
        """A candle is closed once its period has ended by exchange time."""
        return open_ts + self.ms <= now_ms

    def last_closed(self, now_ms: int) -> int:
        """Open time of the newest candle that has closed at `now_ms`."""
        return self.floor(now_ms) - self.ms

    def count(self, start: int, end: int) -> int:
        """Number of candle opens in [start, end) for aligned bounds."""
        return max(0, (self.ceil(end) - self.ceil(start)) // self.ms)

    def opens(self, start: int, end: int) -> range:
        """Every candle open time in [start, end)."""
        return range(self.ceil(start), end, self.ms)

    def __str__(self) -> str:
        return self.name


def parse_timeframes(names: Iterable[str]) -> tuple[Timeframe, ...]:
    """Parse and de-duplicate a list of timeframe names, keeping the user's order."""
    seen: dict[str, Timeframe] = {}
    for name in names:
        tf = Timeframe.parse(name)
        seen.setdefault(tf.name, tf)
    return tuple(seen.values())


def missing_ranges(
    present: Iterable[int], start: int, end: int, tf: Timeframe
) -> Iterator[tuple[int, int]]:
    """Yield the [gap_start, gap_end) ranges of candle opens in [start, end) absent from `present`.

    `present` must be sorted ascending and aligned to `tf`; values outside [start, end) are ignored.
    """
    expected = tf.ceil(start)
    for ts in present:
        if ts < expected:
            continue
        if ts >= end:
            break
        if ts > expected:
            yield expected, ts
        expected = ts + tf.ms
    if expected < end:
        yield expected, tf.ceil(end)
