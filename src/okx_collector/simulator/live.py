"""The in-progress candle at any instant of its period (pure).

A `LiveCandle` holds one candle's 1m bars with running aggregates, so the in-progress state at
any time is O(1): the completed minutes' aggregates plus a partial current minute (its close
moved part of the way from its open, with a wiggle; its wicks and volume grown in proportion).
Until the period ends the volume is short of the final one and the close usually differs; from
the period's end on, the state is exactly the closed candle.
"""

from __future__ import annotations

import math
from itertools import accumulate

from okx_collector.simulator.bars import MINUTE_MS

_GOLDEN_ANGLE = 2.399963  # radians: decorrelates the wiggle of consecutive minutes
# (open ticks, high ticks, low ticks, close ticks, volume lots, traded value in lots * ticks)
RawOHLCV = tuple[int, int, int, int, int, int]


class LiveCandle:
    """One candle of one instrument, from its 1m bars."""

    __slots__ = (
        "_c",
        "_cum_h",
        "_cum_l",
        "_cum_q",
        "_cum_v",
        "_h",
        "_l",
        "_o",
        "_v",
        "_vw",
        "open_ts",
    )

    def __init__(
        self,
        open_ts: int,
        o: list[int],
        h: list[int],
        lo: list[int],
        c: list[int],
        v: list[int],
        vw: list[int],
    ) -> None:
        self.open_ts = open_ts  # candle open time, ms
        self._o, self._h, self._l, self._c, self._v, self._vw = o, h, lo, c, v, vw
        self._cum_h = list(accumulate(h, max))  # high of minutes 0..k
        self._cum_l = list(accumulate(lo, min))  # low of minutes 0..k
        self._cum_v = list(accumulate(v))  # volume of minutes 0..k
        self._cum_q = list(accumulate(a * b for a, b in zip(v, vw, strict=True)))

    @property
    def close_ts(self) -> int:
        return self.open_ts + len(self._o) * MINUTE_MS

    def final(self) -> RawOHLCV:
        """The closed candle."""
        return (
            self._o[0],
            self._cum_h[-1],
            self._cum_l[-1],
            self._c[-1],
            self._cum_v[-1],
            self._cum_q[-1],
        )

    def at(self, now_ms: int) -> RawOHLCV:
        """The candle as it stands at `now_ms` (the final candle from its close time on)."""
        k, rem = divmod(max(0, now_ms - self.open_ts), MINUTE_MS)
        if k >= len(self._o):
            return self.final()
        f = rem / MINUTE_MS
        o, c, hk, lk = self._o[k], self._c[k], self._h[k], self._l[k]
        top, bottom = max(o, c), min(o, c)
        # a wiggle around the open -> close line that vanishes at both ends of the minute
        wiggle = math.sin(math.pi * f) * math.sin(6 * math.pi * f + k * _GOLDEN_ANGLE)
        close = o + round((c - o) * f + wiggle * (hk - lk) / 4)
        close = min(hk, max(lk, close))
        high = min(hk, max(o, close) + round((hk - top) * f))
        low = max(lk, min(o, close) - round((bottom - lk) * f))
        vol = int(self._v[k] * f)
        value = vol * self._vw[k]
        if k:
            high = max(high, self._cum_h[k - 1])
            low = min(low, self._cum_l[k - 1])
            vol += self._cum_v[k - 1]
            value += self._cum_q[k - 1]
        return (self._o[0], high, low, close, vol, value)
