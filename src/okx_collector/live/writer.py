"""The single writer: a bounded queue in, one journal file per batch out, off the event loop.

Producers (websocket sinks, REST catch-ups, funding, mark/index candles, open interest) never
touch files. The writer takes whatever is queued (after letting a close's burst finish arriving)
and stores it with one store call per kind, the kinds side by side on the writer's threads: every
candle of the batch, all series, goes into one fsynced journal file (a few ms for a thousand
series), so a closed candle is on disk milliseconds after it is known closed. Batches are written
one at a time, in queue order, so that a later value of a candle is journaled after the earlier
one (the store's precedence rule: the newer journal file wins).
Compaction into the per-series partitions runs elsewhere (`store.compact`), off this path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from okx_collector.localclock import REAL_CLOCK, LocalClock, bounded
from okx_collector.models import Candle, FundingObservation, FundingRate, OpenInterest, PriceCandle
from okx_collector.timeframes import Timeframe

log = logging.getLogger(__name__)

QUEUE_SIZE = 20_000  # items; a full queue sheds websocket candles (REST catch-up refetches them)
BATCH_ITEMS = 5_000
GATHER_QUIET_S = 0.005  # a burst has arrived once the queue stops growing for this long
# A batch waits for the rest of its burst at most this long. A close's confirms of 1,000
# perpetuals' trade, mark and index candles take ~55 ms to parse on a quiet machine, twice that
# under load: a burst cut in two is written in two batches, the second after the first's write.
GATHER_MAX_S = 0.15
# While a batch is written, the websocket connections may be held (not read) for at most this
# long, and not again within HOLD_EVERY_S: at a close the loop would otherwise parse the next
# candles' pushes meanwhile, and the writer's threads wait for the interpreter lock between
# their steps (50-100 ms for 15-25 ms of work, at 1,000 perpetuals x trade, mark, index).
HOLD_MAX_S = 0.05
HOLD_EVERY_S = 1.0


class WritableStore(Protocol):
    def write_candles_many(
        self, items: Sequence[tuple[str, Timeframe, Sequence[Candle]]]
    ) -> int: ...
    def write_funding_many(self, items: Sequence[tuple[str, Sequence[FundingRate]]]) -> int: ...
    def write_funding_live_many(
        self, items: Sequence[tuple[str, Sequence[FundingObservation]]]
    ) -> int: ...
    def write_price_candles_many(
        self,
        price: Literal["mark", "index"],
        items: Sequence[tuple[str, Timeframe, Sequence[PriceCandle]]],
    ) -> int: ...
    def write_open_interest_many(
        self, items: Sequence[tuple[str, Timeframe, Sequence[OpenInterest]]]
    ) -> int: ...


# The store's journal kinds. Mark and index candles are keyed by the perpetual's or the index's
# id (`inst_id` of an Item), open interest by the perpetual, each with its timeframe.
Kind = Literal[
    "candles", "funding", "funding_live", "mark_candles", "index_candles", "open_interest"
]
# The kinds of a batch, each one journal file. They are written side by side (each kind has its
# own journal folder, so their order does not matter; within a kind, batches stay in queue
# order): a close of trade, mark and index candles then costs one fsync's wait, not three.
KIND_ORDER: tuple[Kind, ...] = (
    "candles", "funding", "funding_live", "mark_candles", "index_candles", "open_interest"
)  # fmt: skip
_PRICE: dict[Kind, Literal["mark", "index"]] = {"mark_candles": "mark", "index_candles": "index"}


@dataclass(frozen=True, slots=True)
class Item:
    kind: Kind
    inst_id: str  # the series id: an instrument, or an index (`BTC-USDT`) for index candles
    tf: Timeframe | None  # None for funding
    rows: (
        Sequence[Candle]
        | Sequence[FundingRate]
        | Sequence[FundingObservation]
        | Sequence[PriceCandle]
        | Sequence[OpenInterest]
    )


@dataclass
class WriterStats:
    rows_written: int = 0  # rows handed to the store (journaled)
    writes: int = 0  # store calls (journal files)
    dropped: int = 0  # items shed because the queue was full
    delays_ms: list[int] = field(default_factory=list)  # candle close -> on disk, exchange ms

    def take_delays(self) -> list[int]:
        taken, self.delays_ms = self.delays_ms, []
        return taken


class Writer:
    """Owns the queue and the write loop; `stop()` flushes everything queued, then returns."""

    def __init__(
        self, store: WritableStore, now: Callable[[], int], local: LocalClock = REAL_CLOCK
    ) -> None:
        self.store = store
        self.now = now
        self.local = local  # the gather window's time (a test steps it)
        self.stats = WriterStats()
        # A thread per kind: a batch's kinds are written at once, and a batch is written only
        # once the previous one is, so each kind's files reach the journal in queue order.
        self._pool = ThreadPoolExecutor(len(KIND_ORDER), thread_name_prefix="writer")
        self._queue: asyncio.Queue[Item | None] = asyncio.Queue(QUEUE_SIZE)
        # A write failed (a full disk): `run` raises it, producers are no longer held up, and
        # `on_failure` tells the owner to stop (the collect command sets its stop event).
        self.failure: Exception | None = None
        self.on_failure: Callable[[Exception], None] | None = None
        # `hold()` stops reading the websockets and returns what resumes them (the collect
        # command sets the exchange's `hold_reading`); None: nothing held.
        self.hold: Callable[[], Callable[[], None]] | None = None
        self._held_at = -HOLD_EVERY_S

    def offer(self, item: Item) -> bool:
        """Queue without waiting (for sinks running inside ccxt's message handler)."""
        if self.failure is not None:
            return False
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.stats.dropped += 1
            return False
        return True

    async def put(self, item: Item) -> None:
        """Queue, waiting for room (back-pressure for REST producers); after a failed write,
        drop it: the job is stopping, and a rerun fetches it again."""
        if self.failure is None:
            await self._queue.put(item)

    async def stop(self) -> None:
        """Ask `run` to return once everything queued is written (at once, if it failed)."""
        if self.failure is None:
            await self._queue.put(None)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        try:
            await self._run()
        except Exception as exc:
            self.failure = exc
            # Nothing more will be written: wake every producer waiting for room (a `stop()`
            # among them), and tell the owner.
            while not self._queue.empty():
                self._queue.get_nowait()
            if self.on_failure is not None:
                self.on_failure(exc)
            raise
        finally:
            self._pool.shutdown(wait=False)  # (after a cancel a write may still finish)

    async def _run(self) -> None:
        done = False
        while not done:
            first = await self._queue.get()
            batch: list[Item] = []
            if first is None:
                done = True
            else:
                batch.append(first)
                await self._gather()
            while len(batch) < BATCH_ITEMS and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    done = True
                    continue
                batch.append(item)
            if batch:
                started = time.monotonic()
                await self._write_held(batch)
                log.debug(
                    "wrote %d items in %.3f s (%d still queued)",
                    len(batch), time.monotonic() - started, self._queue.qsize(),
                )  # fmt: skip

    async def _write_held(self, batch: list[Item]) -> None:
        """`_write`, the websockets held meanwhile for at most HOLD_MAX_S (on the writer's
        clock), and not again within HOLD_EVERY_S: a hold delays the pushes after it (and the
        pongs) by that much, a few times a minute at most."""
        now = self.local.monotonic()
        if self.hold is None or now - self._held_at < HOLD_EVERY_S:
            await self._write(batch)
            return
        self._held_at = now
        write = asyncio.ensure_future(self._write(batch))
        resume = self.hold()
        try:
            await bounded(self.local, asyncio.shield(write), HOLD_MAX_S)
        except BaseException:
            write.cancel()  # (only the wait failed or was cancelled: the write is left as is)
            raise
        finally:
            resume()
        await write

    async def _gather(self) -> None:
        """Let a burst finish arriving before taking it: the confirmed candles of a close are
        parsed one message at a time, and a batch taken at the first would hold one series (the
        other 999 then wait for its write). Waits while the queue grows, at most
        `GATHER_MAX_S`; alone, an item waits `GATHER_QUIET_S`."""
        deadline = self.local.monotonic() + GATHER_MAX_S
        size = -1
        while self.local.monotonic() < deadline:
            now = self._queue.qsize()
            if now == size or now >= BATCH_ITEMS:
                return
            size = now
            await self.local.sleep(GATHER_QUIET_S)

    async def _write(self, batch: list[Item]) -> None:
        groups: dict[tuple[Kind, str, str], list[Item]] = defaultdict(list)
        for item in batch:
            groups[(item.kind, item.inst_id, item.tf.name if item.tf else "")].append(item)
        # kind -> (series id, timeframe, rows), the rows of a series in queue order
        by_kind: dict[Kind, list[tuple[str, Timeframe | None, list[Any]]]] = defaultdict(list)
        for (kind, inst_id, _), items in groups.items():
            by_kind[kind].append((inst_id, items[0].tf, [row for i in items for row in i.rows]))
        # Every kind's write is handed to its thread here, in one go: a task per kind would need
        # a turn of the loop each to start, and the loop waits for the interpreter lock while
        # the first kind's thread builds its table.
        loop = asyncio.get_running_loop()
        kinds = [kind for kind in KIND_ORDER if kind in by_kind]
        writes = [
            loop.run_in_executor(self._pool, self._store_kind, kind, by_kind[kind])
            for kind in kinds
        ]
        results = await asyncio.gather(*writes, return_exceptions=True)  # all end, then raise
        for kind, result in zip(kinds, results, strict=True):
            if isinstance(result, BaseException):
                raise result  # the store's own error (a full disk), as one write's
            self._record(result)
            if kind == "candles":  # each delay measured once it is durable
                for _, tf, candle_rows in by_kind[kind]:
                    self._record_delays(candle_rows, _tf(tf))

    def _store_kind(self, kind: Kind, series: list[tuple[str, Timeframe | None, list[Any]]]) -> int:
        """One kind's rows of a batch as one journal file, on that kind's thread."""
        store = self.store
        if kind == "candles":
            return store.write_candles_many([(i, _tf(tf), rows) for i, tf, rows in series])
        if kind == "funding":
            return store.write_funding_many([(i, rows) for i, _, rows in series])
        if kind == "funding_live":
            return store.write_funding_live_many([(i, rows) for i, _, rows in series])
        if kind == "open_interest":
            return store.write_open_interest_many([(i, _tf(tf), rows) for i, tf, rows in series])
        prices = [(i, _tf(tf), rows) for i, tf, rows in series]
        return store.write_price_candles_many(_PRICE[kind], prices)

    def _record(self, written: int) -> None:
        self.stats.rows_written += written
        self.stats.writes += 1

    def _record_delays(self, candles: Sequence[Candle], tf: Timeframe) -> None:
        now = self.now()
        # Live rows only: a catch-up's old candles would drown the live latency figure.
        self.stats.delays_ms.extend(now - (c.ts + tf.ms) for c in candles if c.source != "backfill")
        if len(self.stats.delays_ms) > 100_000:  # bounded even if nobody reads them
            del self.stats.delays_ms[:50_000]


def _tf(tf: Timeframe | None) -> Timeframe:
    """The timeframe of a candle or open-interest item (producers always give one)."""
    assert tf is not None
    return tf
