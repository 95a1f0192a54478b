"""Backoff delays and the retry loop for exchange calls: one rule, one generator.

`classify` in `exchange` decides what is retryable; this module decides how long to wait.
"""

from __future__ import annotations

import logging
import random
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from okx_collector.errors import ExchangeMaintenance, ExchangeUnavailable
from okx_collector.localclock import REAL_CLOCK, LocalClock

T = TypeVar("T")
log = logging.getLogger(__name__)

BackoffFactory = Callable[[], Iterator[float]]


def backoff_delays(
    initial: float = 0.5,
    factor: float = 2.0,
    cap: float = 30.0,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Capped exponential delays with full jitter (AWS architecture blog), forever.

    Full jitter spreads many clients' retries so they do not hit the exchange in lockstep.
    """
    rand = rng or random.Random()
    ceiling = initial
    while True:
        yield ceiling / 2 + rand.uniform(0, ceiling / 2)
        ceiling = min(cap, ceiling * factor)


MAINTENANCE_LOG_EVERY_S = 60.0


class _MaintenanceNotice:
    """One WARNING while OKX is in maintenance, repeated at most every MAINTENANCE_LOG_EVERY_S
    whatever number of tasks are waiting (each would otherwise log every retry), measured on
    the waiting call's clock (one per process, unless a test steps its own)."""

    def __init__(self) -> None:
        # The time of the last warning, per clock: a time of one clock says nothing of another's.
        self._last: weakref.WeakKeyDictionary[LocalClock, float] = weakref.WeakKeyDictionary()

    def waiting(self, what: str, exc: ExchangeUnavailable, clock: LocalClock) -> None:
        now = clock.monotonic()
        last = self._last.get(clock)
        if last is None or now - last >= MAINTENANCE_LOG_EVERY_S:
            self._last[clock] = now
            log.warning(
                "OKX is in maintenance (%s, during %s); waiting and retrying for as long as it "
                "lasts, then catching up",
                exc, what,
            )  # fmt: skip


maintenance_notice = _MaintenanceNotice()


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int = 8,
    delays: BackoffFactory = backoff_delays,
    on_retry: Callable[[ExchangeUnavailable], None] | None = None,
    clock: LocalClock = REAL_CLOCK,
) -> T:
    """Await `call()`, retrying `ExchangeUnavailable` with backoff; other errors propagate.

    After `attempts` failures the last `ExchangeUnavailable` is raised. OKX's maintenance
    (`ExchangeMaintenance`) does not count as an attempt: maintenance lasts from minutes to more
    than an hour (OKX.md §7), and the call is waited for, with capped backoff, until it ends.
    The waits are slept on `clock`.
    """
    waits = delays()
    attempt = 0
    while True:
        try:
            return await call()
        except ExchangeMaintenance as exc:
            maintenance_notice.waiting(what, exc, clock)
            delay = next(waits)
        except ExchangeUnavailable as exc:
            attempt += 1
            if attempt >= attempts:
                raise
            if on_retry is not None:
                on_retry(exc)
            delay = next(waits)
            log.debug("%s failed (%s); retry %d in %.2fs", what, exc, attempt, delay)
        await clock.sleep(delay)
