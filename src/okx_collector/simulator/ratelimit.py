"""OKX's documented REST rate limits, enforced over a sliding window of real time.

OKX counts requests per rule key (IP, IP + instId, IP + instType) over 2 s and answers HTTP 429
with code 50011 beyond the limit (OKX.md §4.1). Refused requests are not counted in the window.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 2.0

# rule -> requests allowed per window, as OKX documents them
LIMITS: dict[str, int] = {
    "candles": 40,
    "history-candles": 20,
    "funding-rate": 10,  # per IP + instId
    "funding-rate-history": 10,  # per IP + instId
    "instruments": 20,  # per IP + instType
    "ticker": 20,
    "tickers": 20,
    "trades": 100,
    "time": 10,
    # Mark, index, open interest (OKX.md §8, docs/simulator.md "Mark, index, open interest").
    "mark-price-candles": 20,
    "history-mark-price-candles": 10,  # copies of OKX's docs say 10 or 20: the lower one
    "index-candles": 20,
    "history-index-candles": 10,
    "open-interest": 20,  # per IP + instId
    "open-interest-history": 10,  # rubik, per IP + instId
}


class RateLimiter:
    """Sliding-window counters; `scale` multiplies every limit, and 0 disables them."""

    def __init__(
        self,
        scale: float = 1.0,
        window_s: float = WINDOW_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if scale < 0:
            raise ValueError(f"rate_limit_scale must be >= 0, got {scale}")
        self.scale = scale
        self.window_s = window_s
        self._monotonic = monotonic
        self._hits: dict[tuple[str, str], deque[float]] = {}  # (rule, key) -> accepted times

    def allowed(self, rule: str) -> int:
        """Requests allowed per window for `rule` (at least 1 unless limits are off)."""
        return max(1, math.floor(LIMITS[rule] * self.scale))

    def allow(self, rule: str, key: str) -> bool:
        """Record a request and say whether it is within the limit."""
        if self.scale == 0:
            return True
        now = self._monotonic()
        hits = self._hits.setdefault((rule, key), deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(hits) >= self.allowed(rule):
            return False
        hits.append(now)
        return True
