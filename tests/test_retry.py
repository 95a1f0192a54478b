"""The retry loop on a stepped local clock: each failure waits its backoff delay of the clock it
is given (never the loop's), up to the attempt limit; maintenance waits without counting, and
its warning is said once a minute of that clock."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator

import pytest

from okx_collector.errors import ExchangeMaintenance, ExchangeRejected, ExchangeUnavailable
from okx_collector.localclock import SteppedClock, settle
from okx_collector.retry import MAINTENANCE_LOG_EVERY_S, with_retries


def delays() -> Iterator[float]:
    return itertools.count(1.0)  # 1 s, 2 s, 3 s...


class Script:
    """A call that raises the scripted errors in turn, then answers "ok"; records its times."""

    def __init__(self, clock: SteppedClock, errors: list[Exception]) -> None:
        self.clock, self.errors = clock, list(errors)
        self.times: list[float] = []

    async def __call__(self) -> str:
        self.times.append(self.clock.monotonic())
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


@pytest.mark.parametrize(
    ("errors", "attempts", "times", "outcome"),
    [
        ([], 3, [0.0], "ok"),
        ([ExchangeUnavailable("a")], 3, [0.0, 1.0], "ok"),
        ([ExchangeUnavailable("a")] * 2, 3, [0.0, 1.0, 3.0], "ok"),
        ([ExchangeUnavailable("a")] * 3, 3, [0.0, 1.0, 3.0], ExchangeUnavailable),
        ([ExchangeRejected("no")], 3, [0.0], ExchangeRejected),  # fatal: not retried
        # Maintenance is waited out, not counted: 4 waits, then 2 attempts used of 2.
        ([ExchangeMaintenance("m")] * 4 + [ExchangeUnavailable("a")], 2,
         [0.0, 1.0, 3.0, 6.0, 10.0, 15.0], "ok"),
    ],
)  # fmt: skip
async def test_retries_wait_their_backoff_on_the_given_clock(
    errors: list[Exception], attempts: int, times: list[float], outcome: object
) -> None:
    clock = SteppedClock(start=0.0)
    call = Script(clock, errors)
    task = asyncio.create_task(
        with_retries(call, what="test", attempts=attempts, delays=delays, clock=clock)
    )
    await settle()
    assert call.times == [0.0]
    for expected in times[1:]:
        await clock.advance(expected - clock.monotonic() - 0.001)
        assert len(call.times) == times.index(expected)  # not before its delay is over
        await clock.advance(0.001)
    assert call.times == times
    if outcome == "ok":
        assert await task == "ok"
    else:
        assert isinstance(outcome, type)
        with pytest.raises(outcome):
            await task
    assert clock.sleepers == []


async def test_maintenance_warns_once_a_minute_of_the_clock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = SteppedClock(start=0.0)
    call = Script(clock, [ExchangeMaintenance("m")] * 1000)
    with caplog.at_level(logging.WARNING, logger="okx_collector.retry"):
        task = asyncio.create_task(
            with_retries(call, what="test", delays=lambda: itertools.repeat(1.0), clock=clock)
        )
        await settle()
        await clock.advance(MAINTENANCE_LOG_EVERY_S - 1)
        assert len(caplog.records) == 1 and len(call.times) == MAINTENANCE_LOG_EVERY_S
        await clock.advance(1.0)
        assert len(caplog.records) == 2
        await clock.advance(2 * MAINTENANCE_LOG_EVERY_S)
        assert len(caplog.records) == 4
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert "OKX is in maintenance" in caplog.records[0].getMessage()
