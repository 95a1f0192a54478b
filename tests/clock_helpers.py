"""Helpers for tests that run the collector against a simulator on a stepped local clock: the
clock itself, waits on conditions instead of fixed sleeps (of the store's content too), and a
log-record condition."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from okx_collector.localclock import SteppedClock


@asynccontextmanager
async def local_time() -> AsyncIterator[SteppedClock]:
    """The collector's local clock in a test against a simulator: it follows real time, on which
    the simulator's exchange time and the sockets run, and the test steps it ahead where a
    collector timer (a reload, a hold, a spacing) is what it waits for. Pass the collector
    `clock=ExchangeClock()` too: exchange time must not jump with the steps."""
    clock = SteppedClock()

    async def follow() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            await clock.advance(now - last)
            last = now

    task = asyncio.create_task(follow())
    try:
        yield clock
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(
    condition: Callable[[], bool],
    what: str,
    *,
    within: float = 30.0,
    clock: SteppedClock | None = None,
    step: float = 0.0,
) -> None:
    """Wait until `condition()` holds, checking every 20 ms of real time (the simulator's and the
    sockets' time); with `clock`, step it `step` s at each check, so that a collector timer is
    not waited for in real time. Fails after `within` real seconds, saying `what`."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f}s: {what}")
        if clock is not None and step > 0:
            await clock.advance(step)
        await asyncio.sleep(0.02)


async def until_holds(
    check: Callable[[], object], what: str, *, within: float = 30.0, every: float = 0.1
) -> None:
    """Wait until `check()` passes (no AssertionError): the outcome a test asserts, reached
    rather than timed. It reads files, so it runs in a worker thread, every `every` s of real
    time. Fails after `within` real seconds with what `check` said last."""
    deadline = time.monotonic() + within
    while True:
        try:
            await asyncio.to_thread(check)
            return
        except AssertionError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {within:.0f}s: {what}: {exc}") from exc
        await asyncio.sleep(every)


def logged(caplog: Any, text: str) -> Callable[[], bool]:
    """A condition: some captured log record contains `text`."""
    return lambda: any(text in r.getMessage() for r in caplog.records)


def mentions(caplog: Any, text: str, start: int = 0) -> int:
    """How many captured log records, from the `start`-th on, contain `text` (a mark taken
    before a fault counts only what the fault caused)."""
    return sum(text in r.getMessage() for r in caplog.records[start:])


def beats(caplog: Any, name: str, start: int = 0) -> int:
    """The collector's count `name` (`reconnects`, `fallbacks`, ...) as its heartbeat lines
    from the `start`-th captured record on report it: each line counts since the previous one.
    Needs INFO records of `okx_collector` captured."""
    total = 0
    for record in caplog.records[start:]:
        message = record.getMessage()
        if message.startswith("heartbeat "):
            found = re.search(rf"\b{name}=(\d+)", message)
            total += int(found.group(1)) if found else 0
    return total
