"""Websocket subscriptions to mark-price candles, index candles and open interest (no I/O).

`pushes.PushScheduler` schedules them: `mark-price-candle<bar>` and `index-candle<bar>` exactly as
trade candles (in-progress rows `confirm` "0" every push interval, the final row `confirm` "1" when
the candle closes by simulated time, then the next one); `open-interest` on subscribe, then on
every 3 s step of simulated time at which the value changed (OKX: "pushed every 3 seconds when
there are updates"), at most once per push interval of real time.
"""

from __future__ import annotations

import json
import math

from okx_collector.simulator.bars import Bar
from okx_collector.simulator.derived import OpenInterestModel, PriceLive, PriceModel

MARK_CHANNEL = "mark-price-candle"  # + bar
INDEX_CHANNEL = "index-candle"  # + bar
OI_CHANNEL = "open-interest"


class PriceCandleSub:
    """A `mark-price-candle<bar>` or `index-candle<bar>` subscription."""

    __slots__ = ("active", "bar", "final", "first_open", "live", "model", "prefix", "silent_id")

    def __init__(self, model: PriceModel, bar: Bar, arg: str, first_open: int) -> None:
        self.model, self.bar = model, bar
        self.prefix = f'{{"arg":{arg},"data":[["'
        self.live: PriceLive | None = None  # the candle in progress (None until first push)
        self.active = True
        self.first_open = first_open  # no candle before this one exists
        # Quiet and delisted are per instrument: an index follows the id it is named by (the
        # spot pair of the same name), a simplification of the simulator.
        self.silent_id = model.key
        # (open time, empty-field share, confirm frame) of `live`, built ahead (see pushes.py)
        self.final: tuple[int, float, str | None] | None = None

    def frame(self, ts: int, raw: tuple[int, ...], confirm: str) -> str:
        row = self.model.row(ts, (raw[0], raw[1], raw[2], raw[3]), confirm)
        return self.prefix + '","'.join(row) + '"]]}'


class OpenInterestSub:
    """An `open-interest` subscription."""

    __slots__ = ("active", "due_ms", "last", "last_real", "model", "prefix")

    def __init__(self, model: OpenInterestModel, arg: str) -> None:
        self.model = model
        self.prefix = f'{{"arg":{arg},"data":['
        self.due_ms = 0  # simulated time of the next check
        self.last: tuple[str, str] | None = None  # (oi, ts) last pushed
        self.last_real = -math.inf  # monotonic() of the last push
        self.active = True

    def frame(self, now_ms: int) -> str | None:
        """The push for `now_ms`, or None when open interest has not changed since the last."""
        row = self.model.row(now_ms, update_ts=True)
        key = (row["oi"], row["ts"])
        if key == self.last:
            return None
        self.last = key
        return self.prefix + json.dumps(row, separators=(",", ":")) + "]}"
