"""The local-clock seam: `SteppedClock` wakes sleepers at their deadlines, in order, only when
stepped; `wait_event` and `bounded` end on the event (the awaitable) or on the clock's timeout,
leaving no task behind."""

from __future__ import annotations

import asyncio

import pytest

from okx_collector.localclock import REAL_CLOCK, SteppedClock, bounded, settle, wait_event


async def test_sleepers_wake_in_deadline_order_and_only_when_stepped() -> None:
    clock = SteppedClock(start=10.0)
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in (("c", 3.0), ("a", 1.0), ("b", 2.0))]
    await settle()
    assert clock.sleepers == [11.0, 12.0, 13.0]
    await asyncio.sleep(0.05)  # real time passing moves nothing
    assert woke == [] and clock.monotonic() == 10.0
    await clock.advance(1.5)
    assert woke == [("a", 11.0)] and clock.monotonic() == 11.5
    await clock.advance(10.0)
    assert woke == [("a", 11.0), ("b", 12.0), ("c", 13.0)]  # each at its own deadline
    assert clock.monotonic() == 21.5 and clock.sleepers == []
    await asyncio.gather(*tasks)


async def test_a_timer_loop_ticks_once_per_period_within_one_advance() -> None:
    """Sleeps started by a woken task fall due in the same advance: a 0.25 s loop ticks at 0 and
    40 more times in 10 s, each tick seeing its own time; stopped, it ends at its next wake."""
    clock = SteppedClock(start=0.0)
    ticks: list[float] = []
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            ticks.append(clock.monotonic())
            await clock.sleep(0.25)

    task = asyncio.create_task(loop())
    await clock.advance(10.0)
    stop.set()
    await clock.advance(0.25)
    await task
    assert ticks == [i * 0.25 for i in range(41)]


async def test_a_cancelled_sleeper_is_dropped() -> None:
    clock = SteppedClock()
    task = asyncio.create_task(clock.sleep(5.0))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.sleepers == []
    await clock.advance(10.0)  # nothing to wake, nothing raised


async def test_time_never_moves_back() -> None:
    with pytest.raises(ValueError, match="forward"):
        await SteppedClock().advance(-1.0)


@pytest.mark.parametrize("set_after", [None, 0.5, 0.0])
async def test_wait_event_ends_on_the_event_or_the_timeout(set_after: float | None) -> None:
    clock = SteppedClock(start=0.0)
    event = asyncio.Event()
    if set_after == 0.0:
        event.set()
    waiter = asyncio.create_task(wait_event(clock, event, 2.0))
    if set_after:
        await clock.advance(set_after)
        event.set()
    else:
        await clock.advance(1.99)
        assert not waiter.done() or set_after == 0.0
        await clock.advance(0.01)
    assert await asyncio.wait_for(waiter, 1.0) is (set_after is not None)
    assert clock.sleepers == []  # the timer is gone once the event won
    assert len(asyncio.all_tasks()) == 1  # (this test's own task)


async def test_bounded_cancels_the_awaitable_when_the_clock_runs_out() -> None:
    clock = SteppedClock(start=0.0)
    release = asyncio.Event()
    cancelled = asyncio.Event()

    async def watch() -> None:
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    call = asyncio.create_task(bounded(clock, watch(), 1.0))
    await asyncio.sleep(0.05)  # real time passing times nothing out
    await clock.advance(0.99)
    assert not call.done() and not cancelled.is_set()
    await clock.advance(0.01)
    assert await asyncio.wait_for(call, 1.0) is False
    assert cancelled.is_set() and clock.sleepers == []
    assert len(asyncio.all_tasks()) == 1


async def test_bounded_returns_when_the_awaitable_does_and_raises_its_error() -> None:
    clock = SteppedClock(start=0.0)
    release = asyncio.Event()
    call = asyncio.create_task(bounded(clock, release.wait(), 1.0))
    await clock.advance(0.5)
    release.set()
    assert await asyncio.wait_for(call, 1.0) is True
    assert clock.sleepers == []  # the timer is gone once the awaitable won

    async def fails() -> None:
        await clock.sleep(0.2)
        raise ConnectionError("lost")

    call = asyncio.create_task(bounded(clock, fails(), 1.0))
    await clock.advance(0.2)
    with pytest.raises(ConnectionError, match="lost"):
        await asyncio.wait_for(call, 1.0)
    assert clock.sleepers == [] and len(asyncio.all_tasks()) == 1


async def test_bounded_cancelled_by_its_caller_cancels_both() -> None:
    clock = SteppedClock(start=0.0)
    never = asyncio.get_running_loop().create_future()
    call = asyncio.create_task(bounded(clock, never, 5.0))
    await settle()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert never.cancelled() and clock.sleepers == []
    assert len(asyncio.all_tasks()) == 1


async def test_the_real_clock_is_monotonic_and_sleeps() -> None:
    before = REAL_CLOCK.monotonic()
    await REAL_CLOCK.sleep(0.01)
    assert REAL_CLOCK.monotonic() >= before + 0.009
