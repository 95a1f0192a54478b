"""Parts of the live mark/index/open-interest series (`live.derived`): the websocket follower,
the refused subscriptions, the bounded-concurrency rounds of REST requests, and the start-up
catch-up through the collector's writer."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from okx_collector.backfill.derived import DerivedBackfiller
from okx_collector.errors import ExchangeRejected, ExchangeUnavailable
from okx_collector.exchange import OkxExchange
from okx_collector.exchange_derived import WS_CHANNEL_PREFIX, PriceKind
from okx_collector.live.writer import Item, Kind, Writer
from okx_collector.localclock import REAL_CLOCK, LocalClock, bounded
from okx_collector.models import OpenInterest, PriceCandle
from okx_collector.retry import BackoffFactory
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe

log = logging.getLogger("okx_collector.collect")

T = TypeVar("T")
IDLE_WATCH_S = 0.5  # a stream with nothing to watch (all refused or gone) looks again this often
KEEPALIVE_WATCH_S = 1.0  # a subscribed set's one-series watch is renewed at least this often
ITEM_KIND: dict[PriceKind, Kind] = {"mark": "mark_candles", "index": "index_candles"}
REFUSED_RETRY_SECONDS = 600.0  # as the trade-candle collector: a refusal may be passing


def refused_kind(channel: str) -> Kind:
    """The kind of series a refused derived channel (with its bar) carries."""
    if channel.startswith(WS_CHANNEL_PREFIX["mark"]):
        return "mark_candles"
    if channel.startswith(WS_CHANNEL_PREFIX["index"]):
        return "index_candles"
    return "open_interest"


class Refusals:
    """Subscriptions OKX refused (60018), by (channel with its bar, series id): each is left out
    of the websocket (and polled) until REFUSED_RETRY_SECONDS have passed."""

    def __init__(
        self,
        monotonic: Callable[[], float] = REAL_CLOCK.monotonic,
        counted: Callable[[Kind], None] = lambda _: None,
    ) -> None:
        """`counted(kind)` is told of each refusal (the collector's counters, for /metrics)."""
        self._monotonic = monotonic
        self._counted = counted
        self._until: dict[tuple[str, str], float] = {}
        self._unreported: set[tuple[str, str]] = set()  # refused, not yet polled successfully
        self.count = 0

    def add(self, channel: str, series_id: str, message: str) -> None:
        self._until[(channel, series_id)] = self._monotonic() + REFUSED_RETRY_SECONDS
        self._unreported.add((channel, series_id))
        self.count += 1
        self._counted(refused_kind(channel))
        log.info("%s %s refused (%s); polling it over REST", channel, series_id, message[:120])

    def active(self, channel: str, series_id: str) -> bool:
        """Whether the subscription stays refused (False once it is to be asked for again)."""
        until = self._until.get((channel, series_id))
        if until is None:
            return False
        if self._monotonic() < until:
            return True
        del self._until[(channel, series_id)]
        return False

    def polled(self, channel: str, series_id: str) -> None:
        """A poll of the series succeeded: if its subscription was refused, OKX lists the id
        (a delisting answers 51001 instead): one warning."""
        if (channel, series_id) in self._unreported:
            self._unreported.discard((channel, series_id))
            log.warning(
                "OKX refused the %s subscription of %s, which it lists: polled over REST, "
                "subscribed again in %.0f s", channel, series_id, REFUSED_RETRY_SECONDS,
            )  # fmt: skip


async def follow_stream(
    stop: asyncio.Event,
    what: str,
    streamed: Callable[[], list[T]],
    watch: Callable[[list[T]], Coroutine[Any, Any, None]],
    wake: asyncio.Event,
    delays: BackoffFactory,
    on_lost: Callable[[], None] = lambda: None,
    *,
    keep: Callable[[T], Coroutine[Any, Any, None]] | None = None,
    connection: Callable[[], object | None] = lambda: None,
    clock: LocalClock = REAL_CLOCK,
) -> None:
    """Keep what `streamed()` names subscribed until `stop`: each push returns the watch, and
    the next one names what is streamed then; `wake` restarts it at once (the set changed: a
    watch whose only series was refused would never return). A lost connection is retried
    after a backoff (the polls serve the series meanwhile; `on_lost()` is told first).

    Once `watch` has returned for the same set on the current `connection()`, `keep(first
    series)` stands in for it, renewed at least every KEEPALIVE_WATCH_S (so that a refusal's
    hold ending is seen): the set is subscribed, a lost connection rejects that watch as it
    would the batch's, and ccxt's work per watch is one series' instead of the whole set's
    (re-arming a watch of 200 series at each push was two thirds of a mark/index push's CPU).
    Waits and bounds are measured on `clock`."""
    waits = delays()
    armed: list[T] | None = None  # the set of the last watch that returned on `subscribed_on`
    subscribed_on: object | None = None
    while not stop.is_set():
        wake.clear()
        live = streamed()
        current = connection()
        try:
            if keep is not None and live and live == armed and current is subscribed_on:
                await until_stop(stop, bounded(clock, keep(live[0]), KEEPALIVE_WATCH_S), wake)
            else:
                armed = None
                returned = await until_stop(
                    stop, watch(live) if live else clock.sleep(IDLE_WATCH_S), wake
                )
                if returned and live and connection() is not None:
                    armed, subscribed_on = live, connection()
            waits = delays()
        except (ExchangeUnavailable, ExchangeRejected) as exc:
            armed = None
            on_lost()
            log.info("%s stream: %s; polling meanwhile", what, exc)
            await until_stop(stop, clock.sleep(next(waits)))


async def until_stop(
    stop: asyncio.Event, watch: Coroutine[Any, Any, Any], wake: asyncio.Event | None = None
) -> bool:
    """Await a watch call, or return once `stop` (or `wake`) is set (the watch is then
    cancelled); whether the watch itself returned."""
    task = asyncio.ensure_future(watch)
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait({task, *waiters}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, *waiters):
            if not t.done():
                t.cancel()
        for t in (task, *waiters):
            try:
                await t
            except asyncio.CancelledError:
                pass
            except (ExchangeUnavailable, ExchangeRejected):
                if t is task:
                    raise
    return not task.cancelled()


async def work_through(
    lanes: Sequence[tuple[Sequence[T], int]],
    handle: Callable[[T], Awaitable[None]],
    stop: asyncio.Event,
) -> None:
    """`handle(item)` for every item of every lane, each lane `(items, workers)` by up to
    `workers` at a time, started in order; the lanes side by side (a lane per endpoint OKX
    limits on its own, so that its pacing, not a neighbour's requests, sets its speed).

    Returns when every item is handled, or at once when `stop` is set: the items under way are
    then cancelled (their requests' answers would come back at OKX's pace, one per worker, for
    nothing: the run is ending) and no other is started. `handle` catches what an item may fail
    with; anything it raises ends the round."""
    queues = [(deque(items), workers) for items, workers in lanes if items]

    async def worker(queue: deque[T]) -> None:
        while queue and not stop.is_set():
            await handle(queue.popleft())

    async def every_lane() -> None:
        async with asyncio.TaskGroup() as group:
            for queue, workers in queues:
                for _ in range(min(workers, len(queue))):
                    group.create_task(worker(queue))

    if queues:
        await until_stop(stop, every_lane())


class QueuedCatchup(DerivedBackfiller):
    """The start-up catch-up of a live run: rows are queued for the collector's writer (which is
    writing live rows meanwhile: one writer keeps the store's precedence rule); `stored(key,
    ts)` advances a series' newest candle, `count(what, rows, source)` the run's tallies."""

    def __init__(
        self,
        exchange: OkxExchange,
        store: Store,
        writer: Writer,
        stored: Callable[[tuple[str, str, str], int], None],
        count: Callable[[str, int, str], None],
        *,
        delays: BackoffFactory,
        clock: LocalClock = REAL_CLOCK,
    ) -> None:
        super().__init__(exchange, store, delays=delays, clock=clock)
        self.writer = writer
        self.stored = stored
        self.count = count

    async def store_price_candles(
        self, price: PriceKind, series_id: str, tf: Timeframe, rows: list[PriceCandle]
    ) -> int:
        await self.writer.put(Item(ITEM_KIND[price], series_id, tf, rows))
        self.stored((price, series_id, tf.name), max(r.ts for r in rows))
        self.count(price, len(rows), "backfill")
        return len(rows)

    async def store_open_interest(
        self, inst_id: str, tf: Timeframe, rows: list[OpenInterest]
    ) -> int:
        await self.writer.put(Item("open_interest", inst_id, tf, rows))
        self.count("oi", len(rows), "backfill")
        return len(rows)
