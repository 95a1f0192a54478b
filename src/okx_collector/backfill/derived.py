"""Backfill of mark-price candles, index candles and open-interest history (`--series`).

Runs beside the trade-candle `Backfiller` (OKX limits every endpoint on its own, and the pacer
keeps each just under its ceiling): one queue of pages per endpoint (recent and history mark,
recent and history index), each emptied by its own workers, so the four endpoints and the trade
ones overlap in time. Pages are planned by what the store holds (`planner.plan_pages`, as trade
candles), so a rerun resumes after a kill and fills holes; an empty history page older than
everything stored is taken as the start of OKX's data for that series (older pages are skipped).

Open interest: OKX keeps a rubik history of the latest 1,440 entries per period (5m and longer),
so only that much can be backfilled; rows are stored at the period instants, which are the bar
closes of that timeframe (`ts` = the instant the values were in force; that OKX's entry holds the
value at that instant rather than at the end of the period is [UNVERIFIED] on OKX).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from okx_collector.backfill.planner import Page, plan_pages
from okx_collector.errors import InstrumentGone
from okx_collector.exchange import OkxExchange
from okx_collector.exchange_derived import OI_PERIODS, OkxDerived, PriceKind
from okx_collector.instruments import Instrument
from okx_collector.localclock import REAL_CLOCK, LocalClock
from okx_collector.models import OpenInterest, PriceCandle
from okx_collector.retry import BackoffFactory, backoff_delays, with_retries
from okx_collector.store import Store
from okx_collector.store.derived import PRICE_KIND
from okx_collector.store.schema import OPEN_INTEREST
from okx_collector.timeframes import Timeframe, missing_ranges

log = logging.getLogger(__name__)
T = TypeVar("T")

# A page of work: the instrument it is for, and the call that fetches and stores it.
Work = tuple[Instrument, Callable[[], Awaitable[None]]]
WORKERS = 4  # per endpoint queue: a page is up to 3 sequential requests of 100 rows
FLUSH_ROWS = 5_000  # rows of a series buffered before they are written


@dataclass
class PriceJob:
    """One mark (perpetual) or index (index id) candle series being backfilled."""

    price: PriceKind
    inst: Instrument  # a perpetual (mark), or an instrument the index is behind (index)
    series_id: str
    tf: Timeframe
    pages: list[Page]
    floor: int | None = None  # OKX has nothing before this open time (found by an empty page)

    @property
    def key(self) -> str:
        return f"{self.price} {self.series_id} {self.tf.name}"


@dataclass
class DerivedReport:
    rows: dict[str, int] = field(default_factory=lambda: {"mark": 0, "index": 0, "oi": 0})
    pages: int = 0
    series: int = 0
    retries: int = 0
    skipped: list[str] = field(default_factory=list)  # what could not be backfilled, and why


def perpetuals(exchange: OkxExchange, instruments: Sequence[Instrument]) -> list[Instrument]:
    """The perpetuals behind `instruments`: each perpetual, each spot pair's linear perpetual."""
    return exchange.funding_instruments(instruments)


def index_series(derived: OkxDerived, instruments: Sequence[Instrument]) -> list[Instrument]:
    """One instrument per index behind `instruments` (BTC-USDT and BTC-USDT-SWAP: BTC-USDT)."""
    seen: dict[str, Instrument] = {}
    for inst in instruments:
        seen.setdefault(derived.index_id(inst), inst)
    return list(seen.values())


class DerivedBackfiller:
    """Fill the store's mark, index and open-interest holes over [since, until)."""

    def __init__(
        self,
        exchange: OkxExchange,
        store: Store,
        *,
        delays: BackoffFactory = backoff_delays,
        attempts: int = 10,
        clock: LocalClock = REAL_CLOCK,
    ) -> None:
        """`clock` times the retry waits."""
        self.exchange = exchange
        self.derived = OkxDerived(exchange)
        self.store = store
        self.delays = delays
        self.attempts = attempts
        self.clock = clock
        self.report = DerivedReport()
        self.gone: set[str] = set()
        self._buffers: dict[str, tuple[PriceJob, list[PriceCandle]]] = {}

    def plan(
        self,
        kinds: Sequence[str],
        instruments: Sequence[Instrument],
        timeframes: Sequence[Timeframe],
        since: int,
        until: int,
        now: int,
    ) -> list[PriceJob]:
        """One job per mark / index series of the selection: the pages its holes need."""
        wanted: list[tuple[PriceKind, Instrument, str]] = []
        if "mark" in kinds:
            wanted += [("mark", p, p.inst_id) for p in perpetuals(self.exchange, instruments)]
        if "index" in kinds:
            for inst in index_series(self.derived, instruments):
                wanted.append(("index", inst, self.derived.index_id(inst)))
        jobs = []
        for price, inst, series_id in wanted:
            for tf in timeframes:
                present = self.store.kind_timestamps(PRICE_KIND[price], series_id, tf)
                pages = plan_pages(present, tf, since, until, now)
                jobs.append(PriceJob(price, inst, series_id, tf, pages))
        return jobs

    async def run(
        self,
        kinds: Sequence[str],
        instruments: Sequence[Instrument],
        timeframes: Sequence[Timeframe],
        since: int,
        until: int,
        now: int,
        stop: asyncio.Event | None = None,
    ) -> DerivedReport:
        """Fetch and store every selected series; `stop`, once set, ends fetching at the next
        page (what came is written)."""
        jobs = await asyncio.to_thread(self.plan, kinds, instruments, timeframes, since, until, now)
        self.report.series = len(jobs)
        queues: dict[tuple[str, bool], deque[Work]] = {}
        for index in range(max((len(j.pages) for j in jobs), default=0)):
            for job in jobs:  # round-robin: every series advances together
                if index < len(job.pages):
                    page = job.pages[index]
                    work = (job.inst, functools.partial(self._price_page, job, page))
                    queues.setdefault((job.price, page.recent), deque()).append(work)
        oi_perps = perpetuals(self.exchange, instruments) if "oi" in kinds else []
        try:
            async with asyncio.TaskGroup() as group:
                for queue in queues.values():
                    for _ in range(WORKERS):
                        group.create_task(self._worker(queue, stop))
                for inst in oi_perps:
                    group.create_task(
                        self._open_interest(inst, timeframes, since, until, now, stop)
                    )
        finally:
            for job, rows in list(self._buffers.values()):
                await self._write(job, rows)
            self._buffers.clear()
        return self.report

    async def _call(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        def count_retry(exc: Exception) -> None:
            self.report.retries += 1
            log.info("%s: %s; retrying", what, exc)

        return await with_retries(
            call,
            what=what,
            attempts=self.attempts,
            delays=self.delays,
            on_retry=count_retry,
            clock=self.clock,
        )

    async def _worker(self, work: deque[Work], stop: asyncio.Event | None) -> None:
        """Do queued pages in turn until none is left or `stop` is set; the pages of an instrument
        OKX no longer knows are skipped."""
        while work and not (stop is not None and stop.is_set()):
            inst, page = work.popleft()
            if inst.inst_id in self.gone:
                continue
            try:
                await page()
            except InstrumentGone as exc:
                self._gone(exc)

    async def _price_page(self, job: PriceJob, page: Page) -> None:
        """Fetch one page of a mark or index series and buffer its closed candles."""
        if job.floor is not None and page.end <= job.floor:
            return
        fetch = functools.partial(
            self.derived.fetch_price_candles,
            job.price, job.inst, job.tf, page.start, page.end, recent=page.recent,
        )  # fmt: skip
        rows = await self._call(fetch, f"{job.key} page {page.start}")
        self.report.pages += 1
        closed = [r.candle for r in rows if r.confirmed]  # OKX's flag, as trade candles
        if not closed and page.prepend and not page.recent:
            job.floor = page.start if job.floor is None else max(job.floor, page.start)
            return
        _, buffered = self._buffers.setdefault(job.key, (job, []))
        buffered.extend(closed)
        if len(buffered) >= FLUSH_ROWS:
            del self._buffers[job.key]
            await self._write(job, buffered)

    async def _write(self, job: PriceJob, rows: list[PriceCandle]) -> None:
        if rows:
            written = await self.store_price_candles(job.price, job.series_id, job.tf, rows)
            self.report.rows[job.price] += written

    async def store_price_candles(
        self, price: PriceKind, series_id: str, tf: Timeframe, rows: list[PriceCandle]
    ) -> int:
        """Store what a page brought (the live catch-up overrides these two: it queues them for
        the collector's writer instead)."""
        return await asyncio.to_thread(self.store.write_price_candles, price, series_id, tf, rows)

    async def store_open_interest(
        self, inst_id: str, tf: Timeframe, rows: list[OpenInterest]
    ) -> int:
        return await asyncio.to_thread(self.store.write_open_interest, inst_id, tf, rows)

    def _gone(self, exc: InstrumentGone) -> None:
        if exc.inst_id not in self.gone:
            self.gone.add(exc.inst_id)
            log.warning("%s: OKX no longer knows this instrument (delisted?): skipped", exc)

    async def _open_interest(
        self,
        inst: Instrument,
        timeframes: Sequence[Timeframe],
        since: int,
        until: int,
        now: int,
        stop: asyncio.Event | None,
    ) -> None:
        """The rubik history of one perpetual at each timeframe OKX keeps one for, over the
        instants (bar closes) in [since, min(until, now)] the store lacks."""
        work: deque[Work] = deque()
        for tf in timeframes:
            if tf.name not in OI_PERIODS:
                note = f"oi {inst.inst_id} {tf.name}: OKX keeps no history (collect stores it)"
                if note not in self.report.skipped:
                    self.report.skipped.append(note)
                continue
            present = await asyncio.to_thread(
                self.store.kind_timestamps, OPEN_INTEREST, inst.inst_id, tf
            )
            lo, hi = tf.ceil(since), tf.floor(min(until, now)) + tf.ms
            for start, end in list(missing_ranges(present, lo, hi, tf)):
                work.append((inst, functools.partial(self._oi_range, inst, tf, start, end)))
        await self._worker(work, stop)

    async def _oi_range(self, inst: Instrument, tf: Timeframe, start: int, end: int) -> None:
        """Fetch and store the rubik entries of one missing range."""
        fetch = functools.partial(self.derived.fetch_open_interest_history, inst, tf, start, end)
        rows = await self._call(fetch, f"oi {inst.inst_id} {tf.name} {start}")
        # Rubik instants are period openings: bar closes of `tf` as they are.
        aligned = [r for r in rows if tf.is_aligned(r.ts)]
        if aligned:
            written = await self.store_open_interest(inst.inst_id, tf, aligned)
            self.report.rows["oi"] += written
