"""Local (machine) time for the live timers: one seam, so that tests step time instead of sleeping.

The collector, the funding tracker and the instrument watch read `monotonic()` and wait with
`sleep()` of a `LocalClock` they are given; `RealClock` is the machine's. `SteppedClock` stands
still until its owner calls `advance()`, which wakes, in deadline order, every sleeper whose
deadline has passed. Exchange time is another clock (`live.clock.ExchangeClock`), extrapolated
from this one.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Protocol

# Loop iterations `SteppedClock` lets pass after each wake-up: enough for a woken task to run to
# its next wait through a few chained awaits (an event set, a queue put), all without I/O.
SETTLE_ITERATIONS = 20


class LocalClock(Protocol):
    """Monotonic seconds and a sleep measured in them."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The machine's monotonic clock and the event loop's sleep."""

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


REAL_CLOCK = RealClock()


async def wait_event(clock: LocalClock, event: asyncio.Event, seconds: float) -> bool:
    """Wait for `event` at most `seconds` of `clock`'s time; True if it was set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((waiter, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, timer):
            task.cancel()
        await asyncio.gather(waiter, timer, return_exceptions=True)
    return event.is_set()


async def bounded(clock: LocalClock, awaitable: Awaitable[object], seconds: float) -> bool:
    """Await `awaitable` for at most `seconds` of `clock`'s time: True if it finished (its error
    is raised), False if the time ran out (it is then cancelled). `asyncio.timeout` would time
    it on the event loop's clock, which a stepped clock does not move."""
    task = asyncio.ensure_future(awaitable)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Both end before this returns (or re-raises a cancellation of the caller): nothing is
        # left running, and an error of the awaitable is retrieved either way.
        task.cancel()
        timer.cancel()
        await asyncio.wait((task, timer))
        if not task.cancelled():
            task.exception()
    if task.cancelled():
        return False
    task.result()
    return True


class SteppedClock:
    """A clock that moves only when `advance()` is awaited (deterministic timers in tests)."""

    def __init__(self, start: float = 1_000.0) -> None:
        # Integer nanoseconds, so that steps add up exactly (ten sleeps of 0.2 s end at 2 s).
        # The start is not 0, so that "never" (0.0) is in the past.
        self._now_ns = _ns(start)
        self._seq = itertools.count()  # ties between equal deadlines wake in sleep order
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []  # (deadline ns, _, fut)
        self._stepping = asyncio.Lock()  # two advances at once would interleave their wakes

    def monotonic(self) -> float:
        return self._now_ns / 1e9

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now_ns + _ns(seconds), next(self._seq), future))
        try:
            await future
        finally:
            future.cancel()  # a cancelled sleeper is skipped (and dropped) by `advance`

    @property
    def sleepers(self) -> list[float]:
        """Deadlines of the pending sleeps, soonest first."""
        return sorted(d / 1e9 for d, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking each due sleeper at its own deadline, in order.
        Sleeps started by a woken task wake in the same call if they fall due within it."""
        if seconds < 0:
            raise ValueError(f"time only moves forward, not by {seconds}")
        async with self._stepping:
            target = self._now_ns + _ns(seconds)
            await settle()
            while self._sleepers and self._sleepers[0][0] <= target:
                deadline, _, future = heapq.heappop(self._sleepers)
                if future.done():
                    continue
                self._now_ns = max(self._now_ns, deadline)
                future.set_result(None)
                await settle()
            self._now_ns = target
            await settle()


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


async def settle(iterations: int = SETTLE_ITERATIONS) -> None:
    """Let ready tasks run: `iterations` passes of the event loop, no time passing."""
    for _ in range(iterations):
        await asyncio.sleep(0)
