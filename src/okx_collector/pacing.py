"""Client-side request pacing: stay just under OKX's documented REST limits, never over them.

OKX counts requests per endpoint in 2-second windows (OKX.md §4.1). ccxt's own throttle is one
leaky bucket shared by every endpoint at 110 ms x cost, which caps history-candles at 91% of OKX's
ceiling and serialises endpoints that OKX limits separately; so the exchange layer switches it off
and paces each endpoint with its own sliding window here.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

# OKX's documented limits: endpoint key -> (requests, window seconds).
OKX_LIMITS: dict[str, tuple[int, float]] = {
    "history-candles": (20, 2.0),
    "candles": (40, 2.0),
    "funding-rate-history": (10, 2.0),  # per instId
    "funding-rate": (10, 2.0),  # per instId
    "instruments": (20, 2.0),  # per instType
    "time": (10, 2.0),
}
# The window is stretched by this factor so that network jitter between our send time and OKX's
# receive time cannot push 21 requests into one of OKX's 2 s windows (97% of the ceiling).
SAFETY_STRETCH = 1.03


class SlidingWindowLimiter:
    """At most `count` acquisitions in any `window` seconds, granted first come, first served."""

    def __init__(self, count: int, window: float, clock: Callable[[], float] | None = None) -> None:
        self.count = count
        self.window = window
        self._clock = clock
        self._sent: collections.deque[float] = collections.deque()  # grant times, oldest first
        self._lock = asyncio.Lock()  # FIFO among waiters

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._now()
                while self._sent and self._sent[0] <= now - self.window:
                    self._sent.popleft()
                if len(self._sent) < self.count:
                    self._sent.append(now)
                    return
                await asyncio.sleep(self._sent[0] + self.window - now)


class Pacer:
    """One limiter per (endpoint, key), created on first use, scaled by `scale` (0 = unlimited)."""

    def __init__(self, scale: float = 1.0, limits: dict[str, tuple[int, float]] | None = None):
        self.scale = scale
        self._limits = limits or OKX_LIMITS
        self._limiters: dict[tuple[str, str], SlidingWindowLimiter] = {}

    def ceiling(self, endpoint: str) -> float:
        """Requests per second this pacer allows on `endpoint` (per key)."""
        count, window = self._limits[endpoint]
        return count * self.scale / (window * SAFETY_STRETCH)

    async def acquire(self, endpoint: str, key: str = "") -> None:
        if self.scale <= 0 or endpoint not in self._limits:
            return
        limiter = self._limiters.get((endpoint, key))
        if limiter is None:
            count, window = self._limits[endpoint]
            limiter = SlidingWindowLimiter(
                max(1, round(count * self.scale)), window * SAFETY_STRETCH
            )
            self._limiters[(endpoint, key)] = limiter
        await limiter.acquire()
