"""The in-progress candle at any instant of its period (pure).

A `LiveCandle` holds one candle's 1m bars with running aggregates, so the in-progress state at
any time is O(1): the completed minutes' aggregates plus a partial current minute (its close
moved part of the way from its open, with a wiggle; its wicks and volume grown in proportion).
Until the period ends the volume is short of the final one and the close usually differs; from
the period's end on, the state is exactly the closed candle.
"""

from __future__ import annotations

import math

import numpy as np

from okx_collector.simulator.bars import MINUTE_MS
from okx_collector.simulator.noise import I64

# Traded value per minute (lots * ticks) is summed in two parts so that a week cannot overflow.
_SPLIT = 31
_LOW_MASK = (1 << _SPLIT) - 1

_GOLDEN_ANGLE = 2.399963  # radians: decorrelates the wiggle of consecutive minutes
# (open ticks, high ticks, low ticks, close ticks, volume lots, traded value in lots * ticks)
RawOHLCV = tuple[int, int, int, int, int, int]


class LiveCandle:
    """One candle of one instrument, from its 1m bars (numpy rows, ~72 bytes per minute)."""

    __slots__ = ("_cum", "_minutes", "close_ts", "open_ts")

    def __init__(self, open_ts: int, minutes: I64, cum: I64 | None = None) -> None:
        """`minutes`: shape (6, n), rows open, high, low, close (ticks), volume (lots), VWAP
        (ticks) of the candle's n 1m bars; `cum` their `running_aggregates` when the caller
        computed them for many candles at once."""
        self.open_ts = open_ts  # candle open time, ms
        self.close_ts: int = open_ts + minutes.shape[1] * MINUTE_MS  # its end, ms
        self._minutes = minutes
        self._cum = running_aggregates(minutes[None])[0] if cum is None else cum

    def _running(self, k: int) -> tuple[int, int, int, int]:
        """(high, low, volume, value) of minutes 0..k."""
        high, low, vol, value_hi, value_lo = self._cum[:, k].tolist()
        return high, low, vol, (value_hi << _SPLIT) + value_lo

    def final(self) -> RawOHLCV:
        """The closed candle."""
        high, low, vol, value = self._running(-1)
        return (int(self._minutes[0, 0]), high, low, int(self._minutes[3, -1]), vol, value)

    def at(self, now_ms: int) -> RawOHLCV:
        """The candle as it stands at `now_ms` (the final candle from its close time on)."""
        k, rem = divmod(max(0, now_ms - self.open_ts), MINUTE_MS)
        if now_ms >= self.close_ts:
            return self.final()
        f = rem / MINUTE_MS
        o, hk, lk, c, vk, vwk = self._minutes[:, k].tolist()
        top, bottom = max(o, c), min(o, c)
        # a wiggle around the open -> close line that vanishes at both ends of the minute
        wiggle = math.sin(math.pi * f) * math.sin(6 * math.pi * f + k * _GOLDEN_ANGLE)
        close = o + round((c - o) * f + wiggle * (hk - lk) / 4)
        close = min(hk, max(lk, close))
        high = min(hk, max(o, close) + round((hk - top) * f))
        low = max(lk, min(o, close) - round((bottom - lk) * f))
        vol = int(vk * f)
        value = vol * vwk
        if k:
            run_high, run_low, run_vol, run_value = self._running(k - 1)
            high, low = max(high, run_high), min(low, run_low)
            vol += run_vol
            value += run_value
        return (int(self._minutes[0, 0]), high, low, close, vol, value)


def running_aggregates(minutes: I64) -> I64:
    """Running high, low, volume and traded value (split in two so that sums fit int64) of
    candles' 1m bars: shape (k, 6, n) in, (k, 5, n) out; one vectorised pass for k candles."""
    value = minutes[:, 4] * minutes[:, 5]
    return np.stack(
        [
            np.maximum.accumulate(minutes[:, 1], axis=1),
            np.minimum.accumulate(minutes[:, 2], axis=1),
            np.cumsum(minutes[:, 4], axis=1),
            np.cumsum(value >> _SPLIT, axis=1),
            np.cumsum(value & _LOW_MASK, axis=1),
        ],
        axis=1,
    )
