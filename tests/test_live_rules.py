"""The live collector's pure rules, as tables: staleness, the catch-up retry hold, what is due,
when a poll round and a catch-up are due, the retry backoff; and that they stay pure."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from okx_collector.instruments import Instrument
from okx_collector.live.series import (
    OVERDUE_SECONDS,
    SeriesState,
    catch_up_wanted,
    poll_round_due,
    retry_hold_seconds,
    stale_after_ms,
)
from okx_collector.retry import backoff_delays
from okx_collector.timeframes import MINUTE_MS, Timeframe

BTC = Instrument("BTC/USDT", "BTC-USDT", True, quote="USDT")


@pytest.mark.parametrize(
    ("failures", "hold"), [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (50, 60.0)]
)
def test_retry_hold_grows_and_is_capped(failures: int, hold: float) -> None:
    assert retry_hold_seconds(failures) == hold


@pytest.mark.parametrize(
    ("tf", "stale_ms"), [("1m", 30_000), ("15m", 450_000), ("1h", 1_800_000), ("4h", 7_200_000)]
)
def test_stale_after_half_a_candle_and_at_least_30s(tf: str, stale_ms: int) -> None:
    assert stale_after_ms(Timeframe.parse(tf)) == stale_ms


def test_next_due_follows_the_store_then_the_listing_then_since() -> None:
    tf = Timeframe.parse("1m")
    state = SeriesState(BTC, tf, None, streamable=True)
    assert state.next_due(since=5 * MINUTE_MS) == 5 * MINUTE_MS
    state.start = 7 * MINUTE_MS  # a listing joined mid-run: from its first candle
    assert state.next_due(since=5 * MINUTE_MS) == 7 * MINUTE_MS
    state.stored(9 * MINUTE_MS)
    assert state.next_due(since=5 * MINUTE_MS) == 10 * MINUTE_MS
    assert not state.missing_closed(now=11 * MINUTE_MS - 1, since=0)
    assert state.missing_closed(now=11 * MINUTE_MS, since=0)


M1 = Timeframe.parse("1m")
H4 = Timeframe.parse("4h")


@pytest.mark.parametrize(
    ("tf", "last_push", "started", "now", "stale"),
    [
        (M1, None, 0, 30_000, False),  # no push yet: counted from the start, at the limit
        (M1, None, 0, 30_001, True),  # ... and one ms past it
        (M1, 100_000, 0, 130_000, False),  # a push resets the count
        (M1, 100_000, 0, 130_001, True),
        (M1, 100_000, 500_000, 130_001, True),  # a push, not the start, is the reference
        (H4, 0, 0, 7_200_000, False),  # half a 4h candle: two hours
        (H4, 0, 0, 7_200_001, True),
    ],
)
def test_stale_when_silent_past_the_limit(
    tf: Timeframe, last_push: int | None, started: int, now: int, stale: bool
) -> None:
    state = SeriesState(BTC, tf, None, streamable=True, last_push=last_push)
    assert state.is_stale(now, started) is stale


@pytest.mark.parametrize(
    ("last_closed", "start", "since", "due"),
    [
        (None, None, 5 * MINUTE_MS, 5 * MINUTE_MS),  # empty store: the run's --since
        (None, 7 * MINUTE_MS, 5 * MINUTE_MS, 7 * MINUTE_MS),  # a listing: its first candle
        (9 * MINUTE_MS, None, 5 * MINUTE_MS, 10 * MINUTE_MS),  # stored: the next one
        (9 * MINUTE_MS, 20 * MINUTE_MS, 5 * MINUTE_MS, 10 * MINUTE_MS),  # the store wins
    ],
)
def test_next_due(last_closed: int | None, start: int | None, since: int, due: int) -> None:
    state = SeriesState(BTC, M1, last_closed, streamable=True, start=start)
    assert state.next_due(since) == due


@pytest.mark.parametrize(
    ("last_closed", "now", "missing"),
    [
        (None, 1 * MINUTE_MS - 1, False),  # the first candle (open 0) has not closed yet
        (None, 1 * MINUTE_MS, True),  # ... it closes at 1m, exactly
        (0, 2 * MINUTE_MS - 1, False),  # stored the one at 0; the next closes at 2m
        (0, 2 * MINUTE_MS, True),
        (5 * MINUTE_MS, 3 * MINUTE_MS, False),  # a clock behind the store: nothing missing
    ],
)
def test_missing_closed_by_exchange_time(last_closed: int | None, now: int, missing: bool) -> None:
    state = SeriesState(BTC, M1, last_closed, streamable=True)
    assert state.missing_closed(now, since=0) is missing


@pytest.mark.parametrize(
    ("ts", "last_closed"),
    [
        ([3, 5], 5),  # newer replaces
        ([5, 3], 5),  # an older one (a late REST page) never moves it back
        ([4, 4], 4),
    ],
)
def test_stored_only_moves_forward(ts: list[int], last_closed: int) -> None:
    state = SeriesState(BTC, M1, None, streamable=True)
    for t in ts:
        state.stored(t * MINUTE_MS)
    assert state.last_closed == last_closed * MINUTE_MS


@pytest.mark.parametrize(
    ("initial", "factor", "cap", "ceilings"),
    [
        (0.5, 2.0, 30.0, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),  # the defaults
        (1.0, 3.0, 10.0, [1.0, 3.0, 9.0, 10.0, 10.0]),
        (2.0, 1.0, 30.0, [2.0, 2.0, 2.0]),  # factor 1: constant
    ],
)
def test_backoff_grows_to_its_cap_with_jitter_in_the_upper_half(
    initial: float, factor: float, cap: float, ceilings: list[float]
) -> None:
    for seed in range(20):  # full jitter: each delay anywhere in [ceiling / 2, ceiling]
        delays = backoff_delays(initial, factor, cap, rng=random.Random(seed))
        for ceiling in ceilings:
            assert ceiling / 2 <= next(delays) <= ceiling


def test_backoff_jitter_spreads_clients() -> None:
    firsts = {next(backoff_delays(rng=random.Random(seed))) for seed in range(10)}
    assert len(firsts) == 10  # ten clients do not retry in lockstep


@pytest.mark.parametrize(
    ("local", "last_poll", "interval", "due"),
    [
        (100.0, 100.0, 60.0, False),  # just polled
        (159.9, 100.0, 60.0, False),
        (160.0, 100.0, 60.0, True),  # exactly one interval later
        (500.0, 100.0, 60.0, True),  # long overdue (a slow round): one round, not several
        (100.0, 100.0, 0.0, True),  # interval 0: every tick
        (1000.0, 0.0, 60.0, True),  # never polled (the clock's origin is far behind)
    ],
)
def test_poll_round_due(local: float, last_poll: float, interval: float, due: bool) -> None:
    assert poll_round_due(local, last_poll, interval) is due


# busy, held, flagged, missing, polling, poll_due, awaited -> wanted
@pytest.mark.parametrize(
    ("busy", "held", "flagged", "missing", "polling", "poll_due", "awaited", "wanted"),
    [
        (True, False, True, True, False, True, 9.0, False),  # one in flight: never two
        (False, True, True, True, True, True, 9.0, False),  # held after failures: wait
        (False, False, True, False, False, False, 0.0, True),  # asked for (a gap, a reconnect)
        (False, False, False, False, True, True, 0.0, False),  # nothing closed is missing
        (False, False, False, True, True, False, 0.0, False),  # polled: only on the round
        (False, False, False, True, True, True, 0.0, True),
        (False, False, False, True, False, True, 0.0, False),  # streamed: the push comes...
        (False, False, False, True, False, False, OVERDUE_SECONDS - 0.01, False),
        (False, False, False, True, False, False, OVERDUE_SECONDS, True),  # ...or is overdue
    ],
)  # fmt: skip
def test_catch_up_wanted(
    busy: bool, held: bool, flagged: bool, missing: bool, polling: bool, poll_due: bool,
    awaited: float, wanted: bool,
) -> None:  # fmt: skip
    assert catch_up_wanted(
        busy=busy, held=held, flagged=flagged, missing=missing, polling=polling,
        poll_due=poll_due, awaited=awaited,
    ) is wanted  # fmt: skip


@pytest.mark.parametrize(
    "module",
    ["okx_collector.live.series", "okx_collector.localclock", "okx_collector.live.ports",
     "okx_collector.instruments", "okx_collector.models", "okx_collector.timeframes"],
)  # fmt: skip
def test_pure_modules_import_no_io_library(module: str) -> None:
    """The rules and records load without ccxt, pyarrow or aiohttp (a fresh interpreter)."""
    code = (
        f"import sys, {module}; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'ccxt', 'pyarrow', 'aiohttp', 'pandas', 'numpy'}))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == "[]"
