"""The collector's stream batches on a stepped local clock: which series a watch names as the
instrument list changes. The exchange is a small object with the `LiveExchange` calls (the
collector's seam); the same flow over real sockets is in test_lifecycle.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager

from okx_collector.errors import ExchangeRejected
from okx_collector.instruments import Instrument
from okx_collector.live.batch_refusal import REFUSED_BATCH_PAUSE_S
from okx_collector.live.collector import Collector, CollectorOptions
from okx_collector.live.lifecycle import MIN_CHECK_GAP_SECONDS
from okx_collector.live.ports import BadPushSink, CandleSink, FundingSink, RefusalSink
from okx_collector.live.streams import KEEPALIVE_WATCH_S, WATCH_PAUSE
from okx_collector.localclock import SteppedClock
from okx_collector.models import FundingObservation, FundingRate, RawCandle, Source
from okx_collector.okx_answers import BadRows
from okx_collector.timeframes import MINUTE_MS, Timeframe
from tests.clock_helpers import stepped_run
from tests.test_live_funding import NoStore

TF1 = Timeframe.parse("1m")
BTC = Instrument("BTC/USDT", "BTC-USDT", True, quote="USDT")
DOT = Instrument("DOT/USDT", "DOT-USDT", True, quote="USDT")
NOW = 1_790_000_000_000 // MINUTE_MS * MINUTE_MS + 30_000  # mid-candle


class Exchange:
    """`LiveExchange` for the collector: records each watch; REST answers hold nothing new."""

    def __init__(self) -> None:
        self.bad_rows = BadRows()
        self.watched: list[list[str]] = []  # instIds named by each candle watch, in order
        self.listed = {BTC.inst_id, DOT.inst_id}  # OKX's instrument list, as the test sets it
        self._connection = object()  # one healthy websocket connection
        self.quiet = False  # no push comes: a watch of one series waits until it is cancelled
        self.refusing = False  # every watch fails with a refusal that names no instrument
        self.forgotten: list[list[str]] = []  # instIds of each forget_candle_subscriptions

    async def fetch_time(self) -> int:
        return NOW

    async def load_markets(self, *, reload: bool = False) -> set[str]:
        return set(self.listed)

    def funding_instruments(self, instruments: Sequence[Instrument]) -> list[Instrument]:
        return []

    def attach_sinks(
        self, on_candle: CandleSink, on_funding: FundingSink, on_refused: RefusalSink,
        on_bad_push: BadPushSink,
    ) -> None:  # fmt: skip
        pass

    async def watch_candles(self, series: Sequence[tuple[Instrument, Timeframe]]) -> None:
        self.watched.append([inst.inst_id for inst, _ in series])
        if self.refusing:
            raise ExchangeRejected("refused (test)")
        if self.quiet and len(series) == 1:
            await asyncio.Event().wait()

    def forget_candle_subscriptions(self, series: Sequence[tuple[Instrument, Timeframe]]) -> None:
        self.forgotten.append([inst.inst_id for inst, _ in series])

    def candle_connection(self) -> object | None:
        return self._connection

    async def fetch_candles(
        self, inst: Instrument, tf: Timeframe, start: int, end: int, *, recent: bool,
        source: Source,
    ) -> list[RawCandle]:  # fmt: skip
        return []

    async def watch_funding(self, insts: Sequence[Instrument]) -> None:
        await asyncio.Event().wait()

    def forget_funding_subscriptions(self, insts: Sequence[Instrument]) -> None:
        pass

    async def fetch_funding_current(
        self, inst: Instrument, source: Source = "poll"
    ) -> FundingObservation:
        raise AssertionError("no funding is followed")

    async def fetch_funding_history(
        self, inst: Instrument, start: int, end: int, source: Source = "backfill"
    ) -> list[FundingRate]:
        return []


def no_delays() -> Iterator[float]:
    while True:
        yield 0.0


@asynccontextmanager
async def collecting() -> AsyncIterator[tuple[Collector, Exchange, SteppedClock]]:
    clock, exchange = SteppedClock(), Exchange()
    last = NOW // MINUTE_MS * MINUTE_MS - MINUTE_MS  # the newest closed candle is stored
    collector = Collector(
        exchange, NoStore(), [(DOT, TF1, last), (BTC, TF1, last)], [], {},
        CollectorOptions(mode="ws", delays=no_delays), local=clock,
    )  # fmt: skip
    async with stepped_run(clock, collector.run):
        yield collector, exchange, clock


async def test_a_series_the_instrument_list_lacks_leaves_the_watch_until_it_is_back() -> None:
    """After one reload without DOT, ccxt's markets no longer have it: a watch naming it would
    fail for the whole batch. It leaves the batch at once, and comes back if the next list has
    it again (one partial answer); with two lists in a row without it, it is retired."""
    async with collecting() as (collector, exchange, clock):
        await clock.advance(WATCH_PAUSE)
        assert exchange.watched[0] == ["DOT-USDT", "BTC-USDT"]  # the batch's subscription
        exchange.listed = {"BTC-USDT"}
        collector.watch.check_soon()  # (a refusal, a 51001)
        mark = len(exchange.watched)
        await clock.advance(WATCH_PAUSE)
        assert collector.watch.checks == 1
        # Once subscribed, a watch of one series (the batch's first, DOT until it left) keeps
        # the batch alive: DOT is named by none.
        assert exchange.watched[-1] == ["BTC-USDT"]
        assert not any("DOT-USDT" in names for names in exchange.watched[mark + 1 :])
        assert not collector.retired  # not yet: one answer may be partial
        exchange.listed = {"BTC-USDT", "DOT-USDT"}
        mark = len(exchange.watched)
        await clock.advance(MIN_CHECK_GAP_SECONDS)  # the confirming reload, spaced out
        assert collector.watch.checks == 2 and not collector.retired
        assert ["DOT-USDT", "BTC-USDT"] in exchange.watched[mark:]  # subscribed again
        exchange.listed = {"BTC-USDT"}
        collector.watch.check_soon()
        await clock.advance(MIN_CHECK_GAP_SECONDS)
        mark = len(exchange.watched)
        await clock.advance(MIN_CHECK_GAP_SECONDS)
        assert collector.watch.checks == 4 and set(collector.retired) == {"DOT-USDT"}
        assert exchange.watched[-1] == ["BTC-USDT"]
        assert not any("DOT-USDT" in names for names in exchange.watched[mark:])


async def test_the_watch_is_rearmed_once_per_pause_of_local_time() -> None:
    async with collecting() as (_, exchange, clock):
        await clock.advance(WATCH_PAUSE)
        count = len(exchange.watched)
        await clock.advance(10 * WATCH_PAUSE)
        assert len(exchange.watched) == count + 10


async def test_a_quiet_keepalive_watch_is_renewed_on_the_local_clock() -> None:
    """No push comes for the subscribed batch: its one-series watch is cancelled and renewed
    every KEEPALIVE_WATCH_S of the collector's clock (then a WATCH_PAUSE), not of the loop's."""
    async with collecting() as (_, exchange, clock):
        await clock.advance(WATCH_PAUSE)
        exchange.quiet = True
        await clock.advance(WATCH_PAUSE)
        count = len(exchange.watched)
        assert exchange.watched[-1] == ["DOT-USDT"]  # the keepalive stands
        await clock.advance(KEEPALIVE_WATCH_S - 0.01)
        assert len(exchange.watched) == count
        await clock.advance(0.01 + WATCH_PAUSE)
        assert len(exchange.watched) == count + 1
        await clock.advance(10 * (KEEPALIVE_WATCH_S + WATCH_PAUSE))
        assert len(exchange.watched) == count + 11
        assert all(names == ["DOT-USDT"] for names in exchange.watched[count:])


async def test_a_refusal_naming_no_instrument_holds_the_whole_batch_off() -> None:
    """ccxt rejected the watch with a refusal it could not attribute (here a keepalive's): the
    whole batch's subscriptions are forgotten, the batch is not watched again before
    REFUSED_BATCH_PAUSE_S of the collector's clock, and then the watch names all of it (the
    subscriptions are sent again), not the one series of a keepalive."""
    async with collecting() as (_, exchange, clock):
        await clock.advance(WATCH_PAUSE)
        exchange.refusing = True
        await clock.advance(WATCH_PAUSE)
        assert exchange.forgotten == [["DOT-USDT", "BTC-USDT"]]
        exchange.refusing = False
        count = len(exchange.watched)
        await clock.advance(REFUSED_BATCH_PAUSE_S - 0.01)
        assert len(exchange.watched) == count
        await clock.advance(0.01)
        assert exchange.watched[count:] == [["DOT-USDT", "BTC-USDT"]]


async def test_a_run_without_trade_series_does_not_re_add_its_instruments_at_each_reload() -> None:
    """`--series mark,index` with a selector: the collector has no trade series, yet the
    instruments the selection named at start are members; a reload that names them again adds
    nothing, and a listing joins once."""
    clock, exchange = SteppedClock(), Exchange()
    chosen = [BTC, DOT]

    async def expand() -> list[Instrument]:
        return list(chosen)

    collector = Collector(
        exchange, NoStore(), [], [], {}, CollectorOptions(mode="ws", delays=no_delays),
        expand=expand, local=clock, members=[BTC, DOT],
    )  # fmt: skip
    async with stepped_run(clock, collector.run):
        for _ in range(3):
            collector.watch.check_soon()
            await clock.advance(MIN_CHECK_GAP_SECONDS)
        assert collector.watch.checks >= 3
        assert collector.counters.listed == 0 and collector.members == {"BTC-USDT", "DOT-USDT"}
        ada = Instrument("ADA/USDT", "ADA-USDT", True, quote="USDT")
        exchange.listed.add(ada.inst_id)
        chosen.append(ada)
        for _ in range(2):
            collector.watch.check_soon()
            await clock.advance(MIN_CHECK_GAP_SECONDS)
        assert collector.counters.listed == 1 and "ADA-USDT" in collector.members
