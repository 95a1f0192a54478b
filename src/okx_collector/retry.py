"""Backoff delays and the retry loop for exchange calls: one rule, one generator.

`classify` in `exchange` decides what is retryable; this module decides how long to wait.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from okx_collector.errors import ExchangeUnavailable

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


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    attempts: int = 8,
    delays: BackoffFactory = backoff_delays,
    on_retry: Callable[[ExchangeUnavailable], None] | None = None,
) -> T:
    """Await `call()`, retrying `ExchangeUnavailable` with backoff; other errors propagate.

    After `attempts` failures the last `ExchangeUnavailable` is raised.
    """
    waits = delays()
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except ExchangeUnavailable as exc:
            if attempt == attempts:
                raise
            if on_retry is not None:
                on_retry(exc)
            delay = next(waits)
            log.debug("%s failed (%s); retry %d in %.2fs", what, exc, attempt, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
