"""Exchange time, estimated between `fetch_time` syncs.

Closed and stale are decided in exchange time (DESIGN §2). Between syncs the clock extrapolates
with a rate learned from the last two syncs, so that it also follows a simulator whose clock runs at
`--speed` times real time; against OKX the learned rate stays at 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ExchangeClock:
    """`now()` in exchange ms, from (exchange ms, local monotonic s) sync points."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._anchor: tuple[int, float] | None = None  # (exchange ms, local s) of the last sync
        self._first: tuple[int, float] | None = None  # the first sync, for the rate estimate
        self.rate = 1.0  # exchange ms per local ms

    def sync(self, exchange_ms: int) -> None:
        """Record a fresh reading of the exchange's time (taken just now)."""
        local = self._monotonic()
        if self._first is None:
            self._first = (exchange_ms, local)
        else:
            span = local - self._first[1]
            if span >= 0.5:  # too short a span makes the rate estimate noisy
                self.rate = max(0.0, (exchange_ms - self._first[0]) / (span * 1000.0))
        self._anchor = (exchange_ms, local)

    def observe(self, exchange_ms: int) -> None:
        """A lower bound seen in data (a candle's open, a funding `ts`): never run behind it."""
        if self._anchor is None or exchange_ms > self.now():
            self.sync(exchange_ms)

    @property
    def synced(self) -> bool:
        return self._anchor is not None

    def now(self) -> int:
        if self._anchor is None:
            raise RuntimeError("ExchangeClock.now() before the first sync")
        exchange_ms, local = self._anchor
        return exchange_ms + int((self._monotonic() - local) * 1000.0 * self.rate)
