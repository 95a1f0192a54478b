"""The live collector: websocket streams, REST catch-up and polling, funding, heartbeat.

Every task is owned by one TaskGroup and awaited. Websocket pushes go through a sink into the
bounded writer queue; only pushes OKX marked `confirm=1` are stored as they come. Anything else that
closed (a missed confirm, a disconnect, a stalled stream, a full queue) is fetched over REST by a
catch-up, so the stored values are always OKX's final ones.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from okx_collector.errors import ExchangeUnavailable
from okx_collector.exchange import WS_TIMEFRAMES
from okx_collector.instruments import Instrument
from okx_collector.live.catchup import CatchUps
from okx_collector.live.clock import ExchangeClock
from okx_collector.live.funding import FundingTracker
from okx_collector.live.lifecycle import REFRESH_SECONDS, InstrumentWatch
from okx_collector.live.membership import Membership
from okx_collector.live.observer import Observer, Unobserved
from okx_collector.live.ports import LiveExchange
from okx_collector.live.report import heartbeat_line, totals_line
from okx_collector.live.series import SeriesState
from okx_collector.live.streams import Streams
from okx_collector.live.writer import Item, Kind, WritableStore, Writer
from okx_collector.localclock import REAL_CLOCK, LocalClock
from okx_collector.models import Candle
from okx_collector.retry import BackoffFactory, backoff_delays
from okx_collector.timeframes import Timeframe

log = logging.getLogger("okx_collector.collect")

CLOCK_SYNC_SECONDS = 5.0


@dataclass
class CollectorOptions:
    mode: str = "auto"  # ws | poll | auto
    poll_interval: float = 60.0  # local seconds between REST polls
    heartbeat: float = 60.0  # local seconds between heartbeat lines
    since: int = 0  # exchange ms: where an empty series starts
    delays: BackoffFactory = backoff_delays
    refresh_seconds: float = REFRESH_SECONDS  # local seconds between instrument-list reloads


@dataclass
class Counters:
    reconnects: int = 0
    fallbacks: int = 0  # series switched from websocket to REST polling
    catchups: int = 0
    ws_candles: int = 0  # closed candles stored straight from websocket pushes
    refused: int = 0  # subscriptions OKX refused (60018), of every kind
    refused_kinds: dict[Kind, int] = field(default_factory=dict)  # `refused` by kind refused
    delisted: int = 0  # instruments retired because OKX no longer lists them
    listed: int = 0  # instruments added while running (selectors)

    def count_refusal(self, kind: Kind) -> None:
        self.refused += 1
        self.refused_kinds[kind] = self.refused_kinds.get(kind, 0) + 1


class Collector(Streams, CatchUps, Membership):
    """Run until `stop` is set; then flush and return."""

    def __init__(
        self,
        exchange: LiveExchange,
        store: WritableStore,
        series: Sequence[tuple[Instrument, Timeframe, int | None]],
        funding: Sequence[Instrument],
        funding_last: dict[str, int | None],
        options: CollectorOptions,
        clock: ExchangeClock | None = None,
        on_delisted: Callable[[str, int], Awaitable[None]] | None = None,
        expand: Callable[[], Awaitable[list[Instrument]]] | None = None,
        observer: Observer | None = None,  # metrics, health, systemd (see live/observer.py)
        local: LocalClock = REAL_CLOCK,
        members: Sequence[Instrument] = (),
    ) -> None:
        """`on_delisted(inst_id, noticed_ms)` records a delisting (the store's lifecycle file);
        `expand()` gives what the selectors name now (instruments not collected yet join);
        `members` are the run's instruments beside those of `series` and `funding` (a run of
        mark/index/open interest alone has no trade series, yet follows listings and delistings).
        `local` times every wait, hold and cadence; `clock` (exchange time) extrapolates from it
        unless it is given."""
        self.exchange = exchange
        self.observer: Observer = observer or Unobserved()
        self.options = options
        self.local = local
        self.clock = clock or ExchangeClock(local.monotonic)
        self.writer = Writer(store, self._now, self.local)
        self.counters = Counters()
        use_ws = options.mode != "poll"
        self.states = {
            (inst.inst_id, tf.name): SeriesState(
                inst, tf, last, streamable=use_ws and tf.name in WS_TIMEFRAMES
            )
            for inst, tf, last in series
        }
        for state in self.states.values():
            state.polling = not state.streamable
        self.funding = FundingTracker(
            exchange,
            self.writer,
            funding,
            funding_last,
            self._now,
            on_gone=lambda: self.watch.check_soon(),
            local=local,
        )
        # Start-up downtime is fetched by the repair pass before the collector starts; what
        # closes meanwhile is caught up by the overdue rule (streams) or the first poll.
        self._needs_catchup: set[tuple[str, str]] = set()
        self._missing_since: dict[tuple[str, str], float] = {}  # local time a gap was first seen
        self._started = 0
        self._last_poll = 0.0
        self._catchup_slots = asyncio.Semaphore(8)
        self._catchups: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None  # the run's task group, once running
        self._streams: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._on_delisted = on_delisted
        self._expand = expand
        self.timeframes = list(dict.fromkeys(tf for _, tf, _ in series))
        self.members = {inst.inst_id for inst in members}
        self.members.update(inst.inst_id for inst, _, _ in series)
        self.members.update(inst.inst_id for inst in funding)
        self.funding_on = bool(funding)
        self.retired: dict[str, int] = {}  # instId -> exchange ms its delisting was noticed
        self._missing_before: set[str] = set()  # tracked instIds the previous reload lacked
        self.watch = InstrumentWatch(
            functools.partial(exchange.load_markets, reload=True),
            self._on_instrument_list,
            refresh_seconds=options.refresh_seconds,
            delays=options.delays,
            local=local,
        )
        self._last_beat = (0, 0, 0, 0)  # rows, reconnects, fallbacks, catch-ups at the last beat

    def _now(self) -> int:
        return self.clock.now()

    # -- sinks (called by ccxt's message handler on the event loop) ------------------------------

    def on_candle(self, inst_id: str, tf: Timeframe, ts: int, final: Candle | None) -> None:
        """A push: `final` is the closed candle when OKX marked it confirm=1, else None."""
        key = (inst_id, tf.name)
        state = self.states.get(key)
        if state is None:
            return
        self.clock.observe(ts + tf.ms if final is not None else ts)
        state.last_push = self._now()
        if final is None:
            return
        due = state.next_due(self.options.since)
        if ts < due:
            return  # already stored (REST got there first)
        if ts > due:  # candles between were missed: REST fetches them, this one included
            self._needs_catchup.add(key)
            return
        if self.writer.offer(Item("candles", inst_id, tf, [final])):
            state.stored(ts)
            self.counters.ws_candles += 1
        else:
            self._needs_catchup.add(key)

    # -- the run -----------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        if not self.clock.synced:
            self.clock.sync(await self.exchange.fetch_time())
        self._started = self._now()
        self._last_poll = self.local.monotonic()
        self._stop = stop
        if self.options.mode != "poll":
            self.exchange.attach_sinks(
                self.on_candle, self.funding.on_push, self.on_refused, self.on_bad_push
            )
        writer_task = asyncio.create_task(self.writer.run(), name="writer")
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                tasks = [
                    group.create_task(self._supervise(stop), name="supervisor"),
                    group.create_task(self._heartbeat(stop), name="heartbeat"),
                    group.create_task(self._sync_clock(stop), name="clock"),
                    group.create_task(self.funding.run(stop, self.options), name="funding"),
                    group.create_task(self.watch.run(stop), name="instruments"),
                ]
                self._start_streams(list(self.states.values()), self.funding.instruments)
                tasks.append(group.create_task(self.observer.run(self, stop), name="observer"))
                await stop.wait()
                for task in tasks:
                    task.cancel()
                for task in self._streams:
                    task.cancel()
                for task in list(self._catchups):
                    task.cancel()
        finally:
            self._group = None
            await self.writer.stop()
            await writer_task

    async def _sync_clock(self, stop: asyncio.Event) -> None:
        # Early syncs come quickly so that the clock's rate is learned within a second or two.
        pauses = iter((0.5, 0.5, 1.0, 2.0))
        while not stop.is_set():
            await self.local.sleep(next(pauses, CLOCK_SYNC_SECONDS))
            try:
                self.clock.sync(await self.exchange.fetch_time())
            except ExchangeUnavailable as exc:
                log.debug("clock sync failed: %s", exc)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.local.sleep(self.options.heartbeat)
            log.info("heartbeat %s", self.heartbeat_line())

    def heartbeat_line(self) -> str:
        """Mode, live and polling series, worst age; rows, reconnects, fallbacks since last beat."""
        line, self._last_beat = heartbeat_line(self, self._last_beat)
        return line

    def totals_line(self) -> str:
        """Counts since start, for the closing log line."""
        return totals_line(self)
