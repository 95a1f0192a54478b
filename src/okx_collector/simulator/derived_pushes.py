"""Websocket subscriptions to mark-price candles, index candles and open interest (no I/O).

`pushes.PushScheduler` schedules them: `mark-price-candle<bar>` and `index-candle<bar>` exactly as
trade candles (in-progress rows `confirm` "0" every push interval, the final row `confirm` "1" when
the candle closes by simulated time, then the next one); `open-interest` on subscribe, then on
every 3 s step of simulated time at which the value changed (OKX: "pushed every 3 seconds when
there are updates"), at most one burst per push interval of real time, holding every change
since the previous one (none is skipped, however late the check).
"""

from __future__ import annotations

import json
import math

from okx_collector.simulator.bars import Bar
from okx_collector.simulator.derived import OI_STEP_MS, OpenInterestModel, PriceLive, PriceModel

MARK_CHANNEL = "mark-price-candle"  # + bar
INDEX_CHANNEL = "index-candle"  # + bar
OI_CHANNEL = "open-interest"
MAX_CATCHUP_STEPS = 100  # changes pushed at most after a late check (5 simulated minutes)


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

    __slots__ = ("active", "checked", "due_ms", "last", "last_real", "model", "prefix")

    def __init__(self, model: OpenInterestModel, arg: str) -> None:
        self.model = model
        self.prefix = f'{{"arg":{arg},"data":['
        self.due_ms = 0  # simulated time of the next check
        self.last: tuple[str, str] | None = None  # (oi, ts) last pushed
        self.last_real = -math.inf  # monotonic() of the last push
        self.checked: int | None = None  # the last 3 s step checked (its start, simulated ms)
        self.active = True

    def frames(self, now_ms: int) -> list[str]:
        """The pushes due at `now_ms`: one per change since the last check, oldest first. OKX
        pushes every change; a check that comes late (a loaded simulator at high speed, the
        push interval's cap) must not skip one, or a client could not know the value in force
        at an instant between (at most MAX_CATCHUP_STEPS steps are caught up)."""
        step = now_ms - now_ms % OI_STEP_MS
        if self.checked is None:
            instants = [now_ms]
        else:
            first = max(self.checked + OI_STEP_MS, step - (MAX_CATCHUP_STEPS - 1) * OI_STEP_MS)
            instants = [*range(first, step, OI_STEP_MS), now_ms]
        self.checked = step
        return [f for f in map(self.frame, instants) if f is not None]

    def frame(self, now_ms: int) -> str | None:
        """The push for `now_ms`, or None when open interest has not changed since the last."""
        row = self.model.row(now_ms, update_ts=True)
        key = (row["oi"], row["ts"])
        if key == self.last:
            return None
        self.last = key
        return self.prefix + json.dumps(row, separators=(",", ":")) + "]}"
