"""Helpers for tests that run the collector (or one of its loops) on a stepped local clock: the
clock itself, a loop started and stopped on it, waits on conditions instead of fixed sleeps (of
the store's content too), and a log-record condition."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from okx_collector.live.writer import Writer
from okx_collector.localclock import SteppedClock, settle


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


@asynccontextmanager
async def stepped_run(
    clock: SteppedClock,
    run: Callable[[asyncio.Event], Awaitable[None]],
    *,
    writer: Writer | None = None,
    wake: Callable[[], object] = lambda: None,
    step: float = 1.0,
    within: float = 5.0,
) -> AsyncIterator[None]:
    """Run `run(stop)` as a task (beside `writer.run()`, if given) and let it take its first
    steps (no time passing) before the body. At exit, `stop` is set, `wake()` called and `clock`
    stepped `step` s, so that the loop's next wake-up sees `stop`; the task must end within
    `within` real seconds, then the writer is stopped (what it holds is written)."""
    stop = asyncio.Event()
    writing = None if writer is None else asyncio.create_task(writer.run())
    task = asyncio.create_task(run(stop))
    try:
        await settle()
        yield
    finally:
        stop.set()
        wake()
        await clock.advance(step)
        await asyncio.wait_for(task, within)
        if writer is not None and writing is not None:
            await writer.stop()
            await asyncio.wait_for(writing, within)


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
