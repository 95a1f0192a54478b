"""The backfill engine: page workers per endpoint, one writer, retries with backoff.

Workers for `history-candles` and `market/candles` run side by side because OKX limits the two
endpoints separately; the pacer keeps each at just under its ceiling. Candles go through a bounded
queue to a single writer task, which batches them per series and writes off the event loop.
A kill at any moment loses at most the unflushed batches; the next run re-plans from the store.

Every task belongs to one TaskGroup and is awaited. If the writer fails (a full disk), the group
cancels the fetchers at once: none is left waiting on a queue nobody empties. If fetching fails
or is stopped, the writer still stores what was fetched, then the run ends (raising the failure).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

from okx_collector.backfill.derived import DerivedReport
from okx_collector.backfill.planner import Page, plan_pages
from okx_collector.backfill.progress import Progress
from okx_collector.errors import InstrumentGone
from okx_collector.instruments import Instrument
from okx_collector.localclock import REAL_CLOCK, LocalClock
from okx_collector.models import Candle, FundingRate, closed_candles
from okx_collector.ports import CandleHistory, FundingHistory
from okx_collector.retry import BackoffFactory, backoff_delays, with_retries
from okx_collector.store.lifecycle import record_delisted
from okx_collector.timeframes import Timeframe

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

log = logging.getLogger(__name__)
T = TypeVar("T")

HISTORY_WORKERS = 6  # enough requests in flight to hide latency at 10 req/s
RECENT_WORKERS = 4
FLUSH_ROWS = 20_000  # write a series' batch once it holds this many candles...
FLUSH_SECONDS = 2.0  # ...or once it is this old


class BackfillExchange(CandleHistory, FundingHistory, Protocol):
    """The exchange calls a backfill makes (`exchange.OkxExchange` has them)."""

    @property
    def requests(self) -> int: ...  # REST requests sent so far, for the report

    async def newest_open_before(self, inst: Instrument, tf: Timeframe, ts: int) -> int | None: ...


class BackfillStore(Protocol):
    """The store calls a backfill makes (`store.Store` has them); called from worker threads."""

    @property
    def data_dir(self) -> Path: ...  # where a delisting noticed here is recorded

    def candle_timestamps(
        self, inst_id: str, tf: Timeframe, start: int | None = None, end: int | None = None
    ) -> npt.NDArray[np.int64]: ...

    def expected_first_ts(self, inst_id: str, tf: Timeframe) -> int | None: ...

    def write_candles(self, inst_id: str, tf: Timeframe, candles: Sequence[Candle]) -> int: ...

    def write_funding(self, inst_id: str, rates: Sequence[FundingRate]) -> int: ...


@dataclass
class SeriesJob:
    """One (instrument, timeframe) series being backfilled."""

    inst: Instrument
    tf: Timeframe
    pages: list[Page]
    floor: int | None = None  # no candles exist before this open time (instrument listing)
    empty: list[tuple[int, int]] = field(default_factory=list)  # ranges known to hold no candle

    @property
    def key(self) -> str:
        return f"{self.inst.inst_id} {self.tf.name}"

    def known_empty(self, page: Page) -> bool:
        if self.floor is not None and page.end <= self.floor:
            return True
        return any(lo <= page.start and page.end <= hi for lo, hi in self.empty)


@dataclass
class BackfillReport:
    candles: int = 0  # closed candles received
    written: int = 0  # rows added or changed in the store
    funding_rows: int = 0
    pages: int = 0
    requests_start: int = 0
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    series: int = 0
    interrupted: bool = False  # `stop` was set: fetching stopped early (what came is stored)
    derived: DerivedReport | None = None  # mark, index and open interest (--series), if any


class Backfiller:
    """Fill the store's holes for the given series over [since, until)."""

    def __init__(
        self,
        exchange: BackfillExchange,
        store: BackfillStore,
        progress: Progress,
        *,
        delays: BackoffFactory = backoff_delays,
        attempts: int = 10,
        clock: LocalClock = REAL_CLOCK,
    ) -> None:
        """`clock` times the retry waits and the writer's flush age."""
        self.exchange = exchange
        self.store = store
        self.progress = progress
        self.delays = delays
        self.attempts = attempts
        self.clock = clock
        self.report = BackfillReport()
        self.gone: set[str] = set()  # instIds OKX answered 51001 for during this run
        self._queue: asyncio.Queue[tuple[SeriesJob, list[Candle]] | None] = asyncio.Queue(64)
        self._fetch_failure: Exception | None = None  # raised once the writer has stored the rest
        self._fetched = False  # the fetchers are done (or stopped): the end marker is on its way

    def plan(
        self,
        series: Sequence[tuple[Instrument, Timeframe]],
        since: int,
        until: int,
        now: int,
        starts: Mapping[tuple[str, str], int] | None = None,
    ) -> list[SeriesJob]:
        """One job per series: the pages its holes need; `starts` overrides `since` per series."""
        jobs = []
        for inst, tf in series:
            present = self.store.candle_timestamps(inst.inst_id, tf)
            start = (starts or {}).get((inst.inst_id, tf.name), since)
            if present.size:  # a lost range before the first stored candle is fetched again
                expected = self.store.expected_first_ts(inst.inst_id, tf)
                if expected is not None and expected < int(present[0]):
                    start = min(start, expected)
            pages = plan_pages(present, tf, start, until, now)
            jobs.append(SeriesJob(inst, tf, pages))
        return jobs

    async def run(
        self,
        series: Sequence[tuple[Instrument, Timeframe]],
        funding: Sequence[Instrument],
        since: int,
        until: int,
        now: int,
        starts: Mapping[tuple[str, str], int] | None = None,
        stop: asyncio.Event | None = None,
    ) -> BackfillReport:
        """Fetch and store; `stop`, once set, ends fetching (what came is still stored, and the
        report says `interrupted`). A write failure ends the run within moments, raised."""
        started = time.monotonic()
        self.report.requests_start = self.exchange.requests
        outcome = "failed"
        try:
            jobs = await asyncio.to_thread(self.plan, series, since, until, now, starts)
            self.report.series = len(jobs)
            for job in jobs:
                bars = sum(p.bars(job.tf) for p in job.pages)
                self.progress.add_series(job.key, bars)
            history = _interleave([(j, p) for p in j.pages if not p.recent] for j in jobs)
            recent = _interleave([(j, p) for p in j.pages if p.recent] for j in jobs)
            async with asyncio.TaskGroup() as group:
                writer = group.create_task(self._writer(), name="backfill writer")
                fetch = group.create_task(
                    self._fetch(history, recent, funding, since, until, now, writer),
                    name="backfill fetchers",
                )
                if stop is not None:
                    watch = group.create_task(self._stop_on(stop, fetch), name="backfill stop")
                    fetch.add_done_callback(lambda _: watch.cancel())
            if self._fetch_failure is not None:
                raise self._fetch_failure
            outcome = "interrupted" if self.report.interrupted else "finished"
        finally:
            self.report.requests = self.exchange.requests - self.report.requests_start
            self.report.seconds = time.monotonic() - started
            self.progress.finish(outcome)
        return self.report

    async def _fetch(
        self,
        history: deque[tuple[SeriesJob, Page]],
        recent: deque[tuple[SeriesJob, Page]],
        funding: Sequence[Instrument],
        since: int,
        until: int,
        now: int,
        writer: asyncio.Task[None],
    ) -> None:
        """Every page and funding history; then tell the writer that nothing more comes."""
        try:
            async with asyncio.TaskGroup() as fetchers:
                for _ in range(HISTORY_WORKERS):
                    fetchers.create_task(self._page_worker(history, now))
                for _ in range(RECENT_WORKERS):
                    fetchers.create_task(self._page_worker(recent, now))
                for inst in funding:
                    fetchers.create_task(self._funding(inst, since, until, now))
        except Exception as exc:  # `run` raises it once the writer has stored what was fetched
            self._fetch_failure = exc
        finally:
            self._fetched = True
            # A failed writer has ended the run already: nobody would take the end marker.
            if not writer.done():
                await self._queue.put(None)

    async def _stop_on(self, stop: asyncio.Event, fetch: asyncio.Task[None]) -> None:
        """Once `stop` is set, cancel the fetchers (the writer then stores what they fetched)."""
        await stop.wait()
        if not self._fetched:  # (not once it queues the end marker: the writer waits for it)
            self.report.interrupted = True
            fetch.cancel()

    async def _call(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        def count_retry(exc: Exception) -> None:
            self.report.retries += 1
            log.info("%s: %s; retrying", what, exc)

        return await with_retries(
            call, what=what, attempts=self.attempts, delays=self.delays,
            on_retry=count_retry, clock=self.clock,
        )  # fmt: skip

    async def _page_worker(self, pages: deque[tuple[SeriesJob, Page]], now: int) -> None:
        while pages:
            job, page = pages.popleft()
            if job.known_empty(page) or job.inst.inst_id in self.gone:
                self.progress.advance(job.key, page.bars(job.tf), 0)
                continue
            fetch = functools.partial(
                self.exchange.fetch_candles,
                job.inst, job.tf, page.start, page.end, recent=page.recent, source="backfill",
            )  # fmt: skip
            try:
                rows = await self._call(fetch, f"{job.key} page {page.start}")
                # Closed only: OKX's confirm flag, or a period that has ended by exchange time.
                candles = closed_candles(rows)
                if not candles and page.prepend and not page.recent:
                    await self._mark_empty(job, page)
            except InstrumentGone as exc:
                await self._gone(exc, now)
                self.progress.advance(job.key, page.bars(job.tf), 0)
                continue
            self.report.pages += 1
            self.progress.advance(job.key, page.bars(job.tf), len(candles))
            if candles:
                self.report.candles += len(candles)
                await self._queue.put((job, candles))

    async def _mark_empty(self, job: SeriesJob, page: Page) -> None:
        """An empty page older than the store: find where OKX's data actually resumes."""
        older = await self._call(
            lambda: self.exchange.newest_open_before(job.inst, job.tf, page.start),
            f"{job.key} probe before {page.start}",
        )
        if older is None:
            job.floor = page.start if job.floor is None else max(job.floor, page.start)
        else:
            job.empty.append((older + job.tf.ms, page.start))

    async def _gone(self, exc: InstrumentGone, now: int) -> None:
        """OKX answered 51001 for an instrument: it was delisted since the session started. Its
        other pages are skipped, the rest of the backfill goes on; said once, recorded."""
        if exc.inst_id in self.gone:
            return
        self.gone.add(exc.inst_id)
        log.warning(
            "%s: OKX no longer knows this instrument (delisted?): skipping it; data already "
            "stored stays (%s)",
            exc.inst_id, exc,
        )  # fmt: skip
        await asyncio.to_thread(record_delisted, self.store.data_dir, exc.inst_id, now)

    async def _funding(self, inst: Instrument, since: int, until: int, now: int) -> None:
        try:
            rates = await self._call(
                lambda: self.exchange.fetch_funding_history(inst, since, until),
                f"{inst.inst_id} funding history",
            )
        except InstrumentGone as exc:
            await self._gone(exc, now)
            return
        if rates:
            # Awaited first: `total += await ...` would read the total before the await, and
            # concurrent writers would overwrite each other's counts.
            written = await asyncio.to_thread(self.store.write_funding, inst.inst_id, rates)
            self.report.funding_rows += written

    async def _writer(self) -> None:
        pending: dict[str, tuple[SeriesJob, list[Candle], float]] = {}
        while True:
            item = await self._queue.get()
            if item is None:
                break
            job, candles = item
            _, buffered, since = pending.get(job.key, (job, [], self.clock.monotonic()))
            buffered.extend(candles)
            pending[job.key] = (job, buffered, since)
            now = self.clock.monotonic()
            for key, (j, rows, first) in list(pending.items()):
                if len(rows) >= FLUSH_ROWS or now - first >= FLUSH_SECONDS:
                    del pending[key]
                    await self._flush(j, rows)
        for j, rows, _ in pending.values():
            await self._flush(j, rows)

    async def _flush(self, job: SeriesJob, rows: list[Candle]) -> None:
        written = await asyncio.to_thread(self.store.write_candles, job.inst.inst_id, job.tf, rows)
        self.report.written += written


def _interleave(
    per_series: Iterable[Iterable[tuple[SeriesJob, Page]]],
) -> deque[tuple[SeriesJob, Page]]:
    """Round-robin the series' page lists so that every series advances together."""
    lists = [list(x) for x in per_series]
    out: deque[tuple[SeriesJob, Page]] = deque()
    index = 0
    while any(index < len(pages) for pages in lists):
        for pages in lists:
            if index < len(pages):
                out.append(pages[index])
        index += 1
    return out
