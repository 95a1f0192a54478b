"""The funding tracker's timers on a stepped local clock: the poll cadence, the spacing of asks for
a settled rate OKX is still processing, the hold after a refusal. The exchange is a small object
with the `FundingExchange` calls (the tracker's seam); what goes over the wire is tested against
the simulator in test_collect.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager

from okx_collector.errors import ExchangeRejected
from okx_collector.instruments import Instrument
from okx_collector.live.batch_refusal import REFUSED_BATCH_PAUSE_S
from okx_collector.live.collector import CollectorOptions
from okx_collector.live.funding import (
    HOLD_SECONDS,
    SETTLE_LAG_MS,
    SETTLE_RETRY_SECONDS,
    FundingTracker,
)
from okx_collector.live.writer import Writer
from okx_collector.localclock import SteppedClock, settle
from okx_collector.models import FundingObservation, FundingRate, Source
from tests.clock_helpers import stepped_run

SWAP = Instrument("BTC/USDT:USDT", "BTC-USDT-SWAP", False, quote="USDT")
FUNDING_TIME = 1_790_000_000_000 - 1_790_000_000_000 % 28_800_000  # an 8-hourly settlement
NOW = FUNDING_TIME + SETTLE_LAG_MS + 1  # exchange time: the settlement is due


class FundingCalls:
    """`FundingExchange` for the tracker: counts REST calls; OKX's answers set by the test."""

    def __init__(self) -> None:
        self.history_calls = 0
        self.current_calls = 0
        self.settled = False  # False: OKX still "processing" the settlement (no row yet)
        self.refuse = False
        self.refuse_watch = False  # a watch fails with a refusal that names no instrument
        self.watches = 0
        self.forgotten: list[list[str]] = []  # instIds of each forget_funding_subscriptions

    async def watch_funding(self, insts: Sequence[Instrument]) -> None:
        self.watches += 1
        if self.refuse_watch:
            raise ExchangeRejected("refused (test)")
        await asyncio.Event().wait()  # pushes are fed to the tracker by the test

    def forget_funding_subscriptions(self, insts: Sequence[Instrument]) -> None:
        self.forgotten.append([inst.inst_id for inst in insts])

    async def fetch_funding_current(
        self, inst: Instrument, source: Source = "poll"
    ) -> FundingObservation:
        self.current_calls += 1
        if self.refuse:
            raise ExchangeRejected("refused (test)")
        return observation(NOW)

    async def fetch_funding_history(
        self, inst: Instrument, start: int, end: int, source: Source = "backfill"
    ) -> list[FundingRate]:
        self.history_calls += 1
        if not self.settled:
            return []
        return [FundingRate(FUNDING_TIME, 0.0001, 0.0001, source)]


class NoStore:
    """A `WritableStore` that keeps nothing (writes are not what these tests look at)."""

    def write_candles_many(self, items: Sequence[object]) -> int:
        return 0

    def write_funding_many(self, items: Sequence[object]) -> int:
        return 0

    def write_funding_live_many(self, items: Sequence[object]) -> int:
        return 0


def observation(ts: int) -> FundingObservation:
    return FundingObservation(ts, FUNDING_TIME, 0.0001, FUNDING_TIME + 28_800_000, None, "ws")


def no_delays() -> Iterator[float]:
    while True:
        yield 0.0


@asynccontextmanager
async def tracking(
    mode: str = "auto",
) -> AsyncIterator[tuple[FundingTracker, FundingCalls, SteppedClock]]:
    clock, calls = SteppedClock(), FundingCalls()
    writer = Writer(NoStore(), lambda: NOW)
    tracker = FundingTracker(calls, writer, [SWAP], {SWAP.inst_id: FUNDING_TIME - 28_800_000},
                             lambda: NOW, local=clock)  # fmt: skip
    options = CollectorOptions(mode=mode, poll_interval=60.0, delays=no_delays)
    async with stepped_run(clock, lambda stop: tracker.run(stop, options), writer=writer):
        yield tracker, calls, clock


async def test_a_settlement_still_processing_is_asked_for_every_few_seconds() -> None:
    async with tracking() as (tracker, calls, clock):
        assert calls.history_calls == 1  # the start-up fetch (nothing upcoming known yet)
        tracker.on_push(SWAP.inst_id, observation(NOW))  # the upcoming settlement: due now
        await clock.advance(0.5)  # the next tick asks: OKX has no row yet
        assert calls.history_calls == 2
        await clock.advance(SETTLE_RETRY_SECONDS - 0.01)  # not on every 0.5 s tick
        assert calls.history_calls == 2
        await clock.advance(0.5)
        assert calls.history_calls == 3
        calls.settled = True
        await clock.advance(SETTLE_RETRY_SECONDS)
        assert calls.history_calls == 4 and tracker.last_settled[SWAP.inst_id] == FUNDING_TIME
        await clock.advance(600.0)  # settled: nothing more until the next funding time
        assert calls.history_calls == 4


async def test_the_current_rate_is_polled_once_per_poll_interval() -> None:
    async with tracking(mode="poll") as (_, calls, clock):
        await clock.advance(59.9)
        assert calls.current_calls == 0
        await clock.advance(0.5)
        assert calls.current_calls == 1
        await clock.advance(120.0)
        assert calls.current_calls == 3


async def test_a_streamed_rate_is_not_polled() -> None:
    async with tracking(mode="auto") as (tracker, calls, clock):
        for _ in range(4):
            tracker.on_push(SWAP.inst_id, observation(NOW))  # pushes keep coming
            await clock.advance(60.0)
        assert calls.current_calls == 0


async def test_a_refused_poll_holds_the_instrument_for_a_while() -> None:
    async with tracking(mode="poll") as (_, calls, clock):
        calls.refuse = True
        await clock.advance(60.0)
        assert calls.current_calls == 1
        await clock.advance(HOLD_SECONDS - 1.0)  # polls are due, the instrument is held
        assert calls.current_calls == 1
        calls.refuse = False
        await clock.advance(60.0)
        assert calls.current_calls == 2


async def test_a_stream_refusal_naming_no_instrument_holds_the_batch_off() -> None:
    """ccxt rejected the funding watch with a refusal it could not attribute: the batch's
    subscriptions are forgotten (so that they are sent again), and it is not watched again
    before REFUSED_BATCH_PAUSE_S of the tracker's clock (it is polled meanwhile)."""
    async with tracking() as (tracker, calls, clock):
        calls.refuse_watch = True
        stop = asyncio.Event()
        streaming = asyncio.create_task(tracker.stream([SWAP], stop, no_delays))
        try:
            await settle()
            assert calls.watches == 1 and calls.forgotten == [[SWAP.inst_id]]
            calls.refuse_watch = False
            await clock.advance(REFUSED_BATCH_PAUSE_S - 0.01)
            assert calls.watches == 1
            await clock.advance(0.01)
            assert calls.watches == 2
        finally:
            streaming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await streaming
