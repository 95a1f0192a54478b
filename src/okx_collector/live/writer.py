"""The single writer: a bounded queue in, batched Parquet writes off the event loop out.

Producers (websocket sinks, REST catch-ups, funding) never touch files. The writer drains whatever
is queued, groups it per series and writes each group in a worker thread, so a closed candle is on
disk about a second after it is known closed, and the file count grows with time, not writes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import zlib
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Literal, Protocol, TypeVar, cast

from okx_collector.models import Candle, FundingObservation, FundingRate
from okx_collector.timeframes import Timeframe

log = logging.getLogger(__name__)
T = TypeVar("T")

QUEUE_SIZE = 20_000  # items; a full queue sheds websocket candles (REST catch-up refetches them)
BATCH_ITEMS = 5_000
COMMIT_SERIES = 100  # series per store call (to the writer process: fewer round trips)
MIN_CHUNK = 25  # series per store call at least, as a close's queues run out (see _next_chunk)
WRITE_LANES = 2  # group commits in flight at once: encoding, open and rename release the GIL
PARALLEL_WRITES = 4  # funding files written at once (candles go in one group commit)
FIRST_SHARE = 2 / 3  # of the candle series, written by the first of several stores (see route)
GATHER_QUIET_S = 0.005  # a burst has arrived once the queue stops growing for this long
GATHER_MAX_S = 0.05  # a batch waits for the rest of its burst at most this long
IDLE_S = 1.0  # an empty queue this long: merge ended days' hour files (see Store.compact_pending)
COMPACT_AT_LEAST_S = 10.0  # a writer never idle for IDLE_S still merges a slice this often
GIVE_BACK_S = 300.0  # a writer never idle (see _run) returns freed allocator pages this often
COMPACT_SERIES = 8  # series merged per call (~5 ms each): a close arriving meanwhile waits little


class WritableStore(Protocol):
    def write_candles_many(
        self, items: Sequence[tuple[str, Timeframe, Sequence[Candle]]]
    ) -> int: ...
    def write_funding(self, inst_id: str, rates: Sequence[FundingRate]) -> int: ...
    def write_funding_live(self, inst_id: str, obs: Sequence[FundingObservation]) -> int: ...
    def prime_candles(self, inst_id: str, tf: Timeframe) -> None: ...
    def compact_pending(self, limit: int) -> int: ...
    def give_back_memory(self) -> None: ...


Kind = Literal["candles", "funding", "funding_live"]
Work = tuple[str, Timeframe, list[Candle]]  # a series' candles to store
WorkQueue = deque[tuple[float, Work]]  # (series_hash, work), for one store


@dataclass(frozen=True, slots=True)
class Item:
    kind: Kind
    inst_id: str
    tf: Timeframe | None
    rows: Sequence[Candle] | Sequence[FundingRate] | Sequence[FundingObservation]


@dataclass
class WriterStats:
    rows_written: int = 0  # rows added or changed in the store
    writes: int = 0  # file-level write calls
    dropped: int = 0  # items shed because the queue was full
    delays_ms: list[int] = field(default_factory=list)  # candle close -> on disk, exchange ms

    def take_delays(self) -> list[int]:
        taken, self.delays_ms = self.delays_ms, []
        return taken


def route(stores: Sequence[WritableStore], inst_id: str, tf: Timeframe) -> WritableStore:
    """The store that writes a candle series (see `route_index`)."""
    return stores[route_index(len(stores), inst_id, tf)]


def series_hash(inst_id: str, tf: Timeframe) -> float:
    """A stable number in [0, 1) for a series (crc32, not Python's salted hash)."""
    return zlib.crc32(f"{inst_id}/{tf.name}".encode()) / 2**32


def route_index(n: int, inst_id: str, tf: Timeframe) -> int:
    """Which of `n` stores a candle series is queued for: always the same one, so that its cache
    and its day tracking stay warm (a stable hash, not Python's salted one; another store writes
    it only when this one falls behind in a close, see `_next_chunk`). The first store takes
    `FIRST_SHARE` of the series and the others split the rest: a writer process has an
    interpreter to itself, this process shares its own with the event loop."""
    if n == 1:
        return 0
    x = series_hash(inst_id, tf)
    if x < FIRST_SHARE:
        return 0
    return 1 + int((x - FIRST_SHARE) / (1 - FIRST_SHARE) * (n - 1))


class Writer:
    """Owns the queue and the write loop; `stop()` flushes everything queued, then returns.

    `stores`: who writes. Candle series are shared among them by `route` and written in
    parallel (a writer process and this process: two cores for a close burst); funding goes to
    the first. The first store gets `WRITE_LANES` lanes, any other one (this process, helping a
    writer process) one lane: the event loop keeps a fair share of this interpreter's lock.
    Each store's lanes run on threads of their own, so that the allocator keeps the pages of
    as many threads as there are lanes, not of every thread of asyncio's default pool.
    """

    def __init__(self, stores: Sequence[WritableStore], now: Callable[[], int]) -> None:
        self.stores = list(stores)
        self._lanes = [WRITE_LANES if i == 0 else 1 for i in range(len(self.stores))]
        self._pools = [
            ThreadPoolExecutor(lanes, thread_name_prefix=f"writer{i}")
            for i, lanes in enumerate(self._lanes)
        ]
        self.now = now
        self._give_back_due = time.monotonic() + GIVE_BACK_S
        self.stats = WriterStats()
        self._queue: asyncio.Queue[Item | None] = asyncio.Queue(QUEUE_SIZE)
        self._slots = asyncio.Semaphore(PARALLEL_WRITES)
        # A write failed (a full disk): `run` raises it, producers are no longer held up, and
        # `on_failure` tells the owner to stop (the collect command sets its stop event).
        self.failure: Exception | None = None
        self.on_failure: Callable[[Exception], None] | None = None

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
            for pool in self._pools:  # (after a cancel a write may still finish on its thread)
                pool.shutdown(wait=False)

    async def _compact(self) -> bool:
        """One slice of merging ended days' hour files; whether any is left to merge."""
        left = 0
        for i, store in enumerate(self.stores):
            left += await self._on(i, store.compact_pending, COMPACT_SERIES)
        return left > 0

    async def _give_back(self) -> None:
        """Each writing process returns its freed allocator pages (a few ms each)."""
        for i, store in enumerate(self.stores):
            await self._on(i, store.give_back_memory)
        self._give_back_due = time.monotonic() + GIVE_BACK_S

    async def _give_back_if_due(self) -> None:
        if time.monotonic() >= self._give_back_due:
            await self._give_back()

    async def _run(self) -> None:
        done = False
        compact = False  # whether the stores may have ended days' hour files to merge
        slice_due = math.inf  # monotonic time by which a slice runs even if the queue is busy
        while not done:
            if compact:
                if time.monotonic() >= slice_due:  # never idle (a fast simulator): anyway
                    compact = await self._compact()
                    await self._give_back_if_due()
                    slice_due = time.monotonic() + COMPACT_AT_LEAST_S
                try:
                    first = await asyncio.wait_for(self._queue.get(), IDLE_S)
                except TimeoutError:  # idle after a burst of writes (this runs once per burst)
                    while compact and self._queue.empty():
                        compact = await self._compact()
                    # A close of 1,000 series leaves each process ~5-10 MB of freed pages that
                    # its allocators would keep until the next close: returned now, in idle
                    # time, memory between closes stays at its settled level.
                    await self._give_back()
                    slice_due = math.inf
                    continue
            else:
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
                await self._write(batch)
                if not compact:
                    compact = True
                    slice_due = started + COMPACT_AT_LEAST_S
                log.debug(
                    "wrote %d items in %.3f s (%d still queued)",
                    len(batch),
                    time.monotonic() - started,
                    self._queue.qsize(),
                )

    async def _gather(self) -> None:
        """Let a burst finish arriving before taking it: the confirmed candles of a close are
        parsed one message at a time, and a batch taken at the first would hold one series and
        make the other 999 wait for its write (~40 ms). Waits while the queue grows, at most
        `GATHER_MAX_S`; alone, an item waits `GATHER_QUIET_S`."""
        deadline = time.monotonic() + GATHER_MAX_S
        size = -1
        while time.monotonic() < deadline:
            now = self._queue.qsize()
            if now == size or now >= BATCH_ITEMS:
                return
            size = now
            await asyncio.sleep(GATHER_QUIET_S)

    async def _write(self, batch: list[Item]) -> None:
        groups: dict[tuple[Kind, str, str], list[Item]] = defaultdict(list)
        for item in batch:
            groups[(item.kind, item.inst_id, item.tf.name if item.tf else "")].append(item)
        candles = [items for (kind, _, _), items in groups.items() if kind == "candles"]
        async with asyncio.TaskGroup() as group:
            if candles:
                group.create_task(self._write_candles(candles))
            for (kind, _, _), items in groups.items():
                if kind != "candles":
                    group.create_task(self._write_funding(items))

    async def _write_candles(self, groups: list[list[Item]]) -> None:
        """The batch's candles, in calls of up to 100 series (one group commit, two syncs, each),
        every store's lanes at once. A store alone gets two lanes: about half of each file's cost
        (Parquet encoding, open, rename, sync) runs outside the GIL, so two threads store a close
        in a little over half the time of one.

        Each series is queued for its own store (`route_index`), in a stable order; a lane whose
        store has nothing left takes the tail of the longest other queue. A process busy with
        websocket pushes (this one at 4x OKX's cadence) then writes less of a close, and the
        series it gives away are the same from one close to the next, so the other store's
        cache stays warm for them.
        """
        mine: list[list[tuple[float, Work]]] = [[] for _ in self.stores]
        for items in groups:
            first = items[0]
            assert first.tf is not None
            rows = cast(list[Candle], [row for item in items for row in item.rows])
            mine[route_index(len(self.stores), first.inst_id, first.tf)].append(
                (series_hash(first.inst_id, first.tf), (first.inst_id, first.tf, rows))
            )
        queues = [deque(sorted(work, key=itemgetter(0))) for work in mine]
        chunks = -(-sum(map(len, queues)) // MIN_CHUNK)  # lanes beyond that would idle
        async with asyncio.TaskGroup() as lanes:
            for i in range(len(queues)):
                for _ in range(min(self._lanes[i], chunks)):
                    lanes.create_task(self._write_lane(i, queues))

    async def _on(self, i: int, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on store `i`'s own threads."""
        return await asyncio.get_running_loop().run_in_executor(self._pools[i], fn, *args)

    async def _write_lane(self, i: int, queues: list[WorkQueue]) -> None:
        """Write chunks from store `i`'s queue, then help the others, until all are empty."""
        while chunk := _next_chunk(queues, i):
            started = time.monotonic()
            written = await self._on(i, self.stores[i].write_candles_many, chunk)
            took = time.monotonic() - started
            log.debug("store %d wrote %d series in %.3f s", i, len(chunk), took)
            for _, tf, rows in chunk:  # each row's delay is measured when its chunk is durable
                self._record_delays(rows, tf)
            self.stats.rows_written += written
            self.stats.writes += len(chunk)

    async def _write_funding(self, items: list[Item]) -> None:
        first = items[0]
        rows: list[Any] = [row for item in items for row in item.rows]
        async with self._slots:
            if first.kind == "funding":
                written = await asyncio.to_thread(self.stores[0].write_funding, first.inst_id, rows)
            else:
                written = await asyncio.to_thread(
                    self.stores[0].write_funding_live, first.inst_id, rows
                )
        self.stats.rows_written += written
        self.stats.writes += 1

    def _record_delays(self, candles: list[Candle], tf: Timeframe) -> None:
        now = self.now()
        # Live rows only: a catch-up's old candles would drown the live latency figure.
        self.stats.delays_ms.extend(now - (c.ts + tf.ms) for c in candles if c.source != "backfill")
        if len(self.stats.delays_ms) > 100_000:  # bounded even if nobody reads them
            del self.stats.delays_ms[:50_000]


def _next_chunk(queues: list[WorkQueue], i: int) -> list[Work]:
    """Up to `COMMIT_SERIES` series for a lane of store `i`: from the front of its own queue,
    else from the back of the longest other one (the series its store would reach last). The
    chunks shrink as a queue empties, so that the lanes finish a close close together."""
    own = queues[i]
    if own:
        queue, take, share = own, own.popleft, 2
    else:  # a smaller bite: these series are not in this store's cache, so they cost more here
        queue = max(queues, key=len)
        take, share = queue.pop, 4
    size = min(COMMIT_SERIES, max(MIN_CHUNK, -(-len(queue) // share)))
    return [take()[1] for _ in range(min(size, len(queue)))]
