"""Refused derived subscriptions: left out of the websocket until the retry time, one warning
once a poll shows the id is listed. The websocket follower's keepalive watch, renewed and
backed off on the local clock it is given."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from okx_collector.errors import ExchangeUnavailable
from okx_collector.live.derived_parts import (
    KEEPALIVE_WATCH_S,
    REFUSED_RETRY_SECONDS,
    Refusals,
    follow_stream,
)
from okx_collector.localclock import SteppedClock, settle


def test_a_refusal_holds_until_the_retry_time_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = [100.0]
    refusals = Refusals(monotonic=lambda: clock[0])
    assert not refusals.active("open-interest", "BTC-USDT-SWAP")
    refusals.add("open-interest", "BTC-USDT-SWAP", "doesn't exist")
    assert refusals.active("open-interest", "BTC-USDT-SWAP") and refusals.count == 1
    assert not refusals.active("mark-price-candle1m", "BTC-USDT-SWAP")  # per channel
    with caplog.at_level(logging.WARNING, logger="okx_collector"):
        refusals.polled("open-interest", "BTC-USDT-SWAP")
        refusals.polled("open-interest", "BTC-USDT-SWAP")
        refusals.polled("open-interest", "ETH-USDT-SWAP")  # never refused: nothing to say
    assert [r.getMessage()[:45] for r in caplog.records] == [
        "OKX refused the open-interest subscription of"
    ]
    clock[0] += REFUSED_RETRY_SECONDS - 1
    assert refusals.active("open-interest", "BTC-USDT-SWAP")
    clock[0] += 1
    assert not refusals.active("open-interest", "BTC-USDT-SWAP")  # asked for again


async def test_a_subscribed_set_is_kept_alive_by_one_of_its_series() -> None:
    """Once the set's watch returned on a connection, one series' watch stands in; a new set,
    another connection or a lost one watch the whole set again."""
    stop, wake = asyncio.Event(), asyncio.Event()
    conn: list[object | None] = [object()]
    series = [["a", "b", "c"]]
    calls: list[tuple[str, object]] = []
    lost: list[int] = []
    script: list[str] = ["ok", "ok", "new set", "ok", "new conn", "ok", "drop", "ok", "ok"]

    async def step(call: tuple[str, object]) -> None:
        calls.append(call)
        what = script.pop(0) if script else "stop"
        if what == "new set":
            series[0] = ["a", "c"]
        elif what == "new conn":
            conn[0] = object()
        elif what == "drop":
            raise ExchangeUnavailable("connection lost")
        elif what == "stop":
            stop.set()
        await asyncio.sleep(0)

    await follow_stream(
        stop, "test", lambda: list(series[0]),
        lambda live: step(("set", tuple(live))), wake,
        lambda: itertools.repeat(0.0), lambda: lost.append(1),
        keep=lambda one: step(("one", one)), connection=lambda: conn[0],
    )  # fmt: skip
    assert calls == [
        ("set", ("a", "b", "c")),
        ("one", "a"),
        ("one", "a"),  # its step changes the set: the next watch names the new one
        ("set", ("a", "c")),
        ("one", "a"),  # ... and here the connection changes
        ("set", ("a", "c")),
        ("one", "a"),  # lost: the whole set again (after the backoff)
        ("set", ("a", "c")),
        ("one", "a"),
        ("one", "a"),
    ]
    assert lost == [1]


async def test_a_quiet_keepalive_and_a_backoff_run_on_the_given_clock() -> None:
    """No push comes: the one-series watch is cancelled and renewed every KEEPALIVE_WATCH_S of
    the stepped clock; a lost connection waits its backoff on that clock too."""
    clock = SteppedClock(start=0.0)
    stop, wake = asyncio.Event(), asyncio.Event()
    calls: list[tuple[str, float]] = []
    drop, conn = [False], ["first"]

    async def watch(live: list[str]) -> None:
        calls.append(("set", clock.monotonic()))
        if drop[0]:
            drop[0] = False
            raise ExchangeUnavailable("connection lost")

    async def keep(one: str) -> None:
        calls.append(("one", clock.monotonic()))
        await asyncio.Event().wait()  # quiet: returns only when cancelled

    task = asyncio.create_task(
        follow_stream(
            stop, "test", lambda: ["a", "b"], watch, wake, lambda: itertools.repeat(5.0),
            keep=keep, connection=lambda: conn[0], clock=clock,
        )
    )  # fmt: skip
    await settle()
    assert calls == [("set", 0.0), ("one", 0.0)]
    await clock.advance(KEEPALIVE_WATCH_S - 0.01)
    assert len(calls) == 2  # the loop's own clock would not be asked
    await clock.advance(0.01 + 2 * KEEPALIVE_WATCH_S)
    assert calls[2:] == [("one", 1.0), ("one", 2.0), ("one", 3.0)]
    drop[0], conn[0] = True, "second"
    wake.set()  # a new connection: the whole set is watched, and that connection is lost
    await settle()
    assert calls[-1] == ("set", 3.0)
    await clock.advance(4.99)
    assert calls[-1] == ("set", 3.0)  # backing off
    await clock.advance(0.01)
    assert calls[-2:] == [("set", 8.0), ("one", 8.0)]
    stop.set()
    await asyncio.wait_for(task, 1.0)
    assert clock.sleepers == []
