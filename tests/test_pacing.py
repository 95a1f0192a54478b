"""Request pacing: never more than OKX's count in any window, measured from the responses."""

from __future__ import annotations

import asyncio
import random

from okx_collector.pacing import Pacer, SlidingWindowLimiter


async def test_no_window_ever_holds_more_than_the_limit() -> None:
    limiter = SlidingWindowLimiter(5, 0.1)
    loop = asyncio.get_running_loop()
    grants: list[float] = []
    rng = random.Random(7)

    async def request() -> None:
        await limiter.acquire()
        grants.append(loop.time())
        await asyncio.sleep(rng.uniform(0, 0.03))  # latency: the window starts at the response
        limiter.release()

    await asyncio.gather(*(request() for _ in range(30)))
    grants.sort()
    for i, start in enumerate(grants):
        in_window = [t for t in grants[i:] if t < start + 0.1]
        assert len(in_window) <= 5
    # ...and it is not needlessly slow: 30 requests at 5 per 0.1 s take about 0.5-0.7 s.
    assert grants[-1] - grants[0] < 1.0


async def test_unlimited_scale_does_not_wait() -> None:
    pacer = Pacer(scale=0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for _ in range(1000):
        async with pacer.slot("history-candles"):
            pass
    assert loop.time() - started < 0.5
