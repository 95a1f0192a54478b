"""Client-side request pacing: stay just under OKX's documented REST limits, never over them.

OKX counts requests per endpoint in 2-second windows (OKX.md §4.1). ccxt's own throttle is one
leaky bucket shared by every endpoint at 110 ms x cost, which caps history-candles at 91% of OKX's
ceiling and serialises endpoints that OKX limits separately; so the exchange layer switches it off
and paces each endpoint with its own sliding window here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

# OKX's documented limits: endpoint key -> (requests, window seconds).
OKX_LIMITS: dict[str, tuple[int, float]] = {
    "history-candles": (20, 2.0),
    "candles": (40, 2.0),
    "funding-rate-history": (10, 2.0),  # per instId
    "funding-rate": (10, 2.0),  # per instId
    "instruments": (20, 2.0),  # per instType
    "time": (10, 2.0),
    "tickers": (20, 2.0),
    # Mark, index, open interest (OKX.md §8; docs/simulator.md): each limited on its own.
    "mark-price-candles": (20, 2.0),
    "history-mark-price-candles": (10, 2.0),  # copies of OKX's docs say 10 or 20: the lower
    "index-candles": (20, 2.0),
    "history-index-candles": (10, 2.0),
    "open-interest": (20, 2.0),  # per instId
    "open-interest-history": (10, 2.0),  # per instId
}
# OKX counts a request when it arrives; we cannot see that moment, but it lies between our send
# and the response. So a slot is occupied from its grant until its response arrives, and its 2 s
# window starts then: later than OKX's, hence never overlapping a 21st request into OKX's window,
# whatever the latency or a GC pause between grant and send. A tiny stretch covers clock rounding.
SAFETY_STRETCH = 1.005
_IN_FLIGHT = float("inf")  # a slot whose response has not arrived yet


class SlidingWindowLimiter:
    """At most `count` requests in any `window` seconds, counted from their responses; FIFO."""

    def __init__(self, count: int, window: float, clock: Callable[[], float] | None = None) -> None:
        self.count = count
        self.window = window
        self._clock = clock
        self._slots: list[float] = []  # completion time of each slot (in flight: infinity)
        self._lock = asyncio.Lock()  # FIFO among waiters
        self._freed = asyncio.Event()  # set when an in-flight slot completes

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    async def acquire(self) -> None:
        """Wait for a free slot; call `release` once its response has arrived."""
        async with self._lock:
            while True:
                now = self._now()
                self._slots = [t for t in self._slots if t > now - self.window]
                if len(self._slots) < self.count:
                    self._slots.append(_IN_FLIGHT)
                    return
                oldest = min(self._slots)
                self._freed.clear()
                if oldest == _IN_FLIGHT:
                    await self._freed.wait()  # every slot is in flight: wait for a response
                else:
                    await asyncio.sleep(oldest + self.window - now)

    def release(self) -> None:
        """A request's response arrived (or it failed): its window starts now."""
        now = self._now()
        for index, stamp in enumerate(self._slots):
            if stamp == _IN_FLIGHT:
                self._slots[index] = now
                break
        self._freed.set()


class Pacer:
    """One limiter per (endpoint, key), created on first use, scaled by `scale` (0 = unlimited)."""

    def __init__(self, scale: float = 1.0, limits: dict[str, tuple[int, float]] | None = None):
        self.scale = scale
        self._limits = limits or OKX_LIMITS
        self._limiters: dict[tuple[str, str], SlidingWindowLimiter] = {}

    def _limiter(self, endpoint: str, key: str) -> SlidingWindowLimiter | None:
        if self.scale <= 0 or endpoint not in self._limits:
            return None
        limiter = self._limiters.get((endpoint, key))
        if limiter is None:
            count, window = self._limits[endpoint]
            limiter = SlidingWindowLimiter(
                max(1, round(count * self.scale)), window * SAFETY_STRETCH
            )
            self._limiters[(endpoint, key)] = limiter
        return limiter

    @contextlib.asynccontextmanager
    async def slot(self, endpoint: str, key: str = "") -> AsyncIterator[None]:
        """Hold one request slot of `endpoint` from grant until the response has arrived."""
        limiter = self._limiter(endpoint, key)
        if limiter is None:
            yield
            return
        await limiter.acquire()
        try:
            yield
        finally:
            limiter.release()
