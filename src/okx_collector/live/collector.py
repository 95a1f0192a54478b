"""The live collector: websocket streams, REST catch-up and polling, funding, heartbeat.

Every task is owned by one TaskGroup and awaited. Websocket pushes go through a sink into the
bounded writer queue; only pushes OKX marked `confirm=1` are stored as they come. Anything else that
closed (a missed confirm, a disconnect, a stalled stream, a full queue) is fetched over REST by a
catch-up, so the stored values are always OKX's final ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from okx_collector.backfill.planner import PAGE_BARS, recent_from
from okx_collector.errors import (
    ExchangeRejected,
    ExchangeUnavailable,
    InstrumentGone,
)
from okx_collector.exchange import WS_TIMEFRAMES
from okx_collector.instruments import Instrument
from okx_collector.live.clock import ExchangeClock
from okx_collector.live.funding import FundingTracker
from okx_collector.live.lifecycle import REFRESH_SECONDS, InstrumentWatch
from okx_collector.live.membership import Membership
from okx_collector.live.observer import Observer, Unobserved
from okx_collector.live.ports import LiveExchange
from okx_collector.live.report import heartbeat_line, totals_line
from okx_collector.live.series import (
    SeriesState,
    catch_up_wanted,
    poll_round_due,
    retry_hold_seconds,
)
from okx_collector.live.writer import Item, Kind, WritableStore, Writer
from okx_collector.localclock import REAL_CLOCK, LocalClock
from okx_collector.models import Candle, Source, closed_candles
from okx_collector.retry import BackoffFactory, backoff_delays, with_retries
from okx_collector.timeframes import Timeframe

log = logging.getLogger("okx_collector.collect")

BATCH_SERIES = 100  # series per websocket subscribe request (OKX: 480 subscribe ops/hour/conn)
TICK_SECONDS = 0.25  # supervisor cadence (local time)
WATCH_PAUSE = 0.2  # seconds between re-arming a batch's watch call (pushes flow regardless)
KEEPALIVE_WATCH_S = 1.0  # a subscribed batch's one-series watch is renewed at least this often
CLOCK_SYNC_SECONDS = 5.0
GONE_HOLD_SECONDS = 60.0  # REST said 51001 but the list still has it: no catch-up for a while


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


class Collector(Membership):
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

    def _start_streams(self, states: list[SeriesState], funding: list[Instrument]) -> None:
        """Websocket tasks for these series (batches of BATCH_SERIES) and funding streams."""
        if self.options.mode == "poll" or self._group is None:
            return
        streamed = [s for s in states if s.streamable]
        for i in range(0, len(streamed), BATCH_SERIES):
            task = self._group.create_task(self._stream(streamed[i : i + BATCH_SERIES], self._stop))
            self._streams.add(task)
            task.add_done_callback(self._streams.discard)
        for i in range(0, len(funding), BATCH_SERIES):
            task = self._group.create_task(
                self.funding.stream(funding[i : i + BATCH_SERIES], self._stop, self.options.delays)
            )
            self._streams.add(task)
            task.add_done_callback(self._streams.discard)

    async def _stream(self, batch: list[SeriesState], stop: asyncio.Event) -> None:
        """Keep one batch subscribed; reconnect with capped jittered backoff; catch up after.

        Data arrives through the sink; this loop only keeps the subscription alive and notices
        connection changes. Each watch call costs ccxt work for every series of the batch, so it
        is re-armed at most every WATCH_PAUSE seconds rather than after every push. A series that
        was retired (delisted), whose subscription OKX refused, or that the last instrument list
        lacked (ccxt's markets no longer have it: a watch naming it would fail the whole batch)
        is left out of the batch; the others stay subscribed.
        """
        delays = self.options.delays()
        refusals = self.options.delays()
        connection: object | None = None
        armed: list[tuple[str, str]] = []  # the series of the last watch that returned
        while not stop.is_set():
            local = self.local.monotonic()
            live = [
                s for s in batch
                if s.ident in self.states and s.streamable and s.refused_until <= local
                and s.inst.inst_id not in self._missing_before
            ]  # fmt: skip
            if not any(s.ident in self.states for s in batch):
                return
            if not live:
                await self.local.sleep(1.0)
                continue
            idents = [s.ident for s in live]
            pairs = [(s.inst, s.tf) for s in live]
            # Once the batch is subscribed on the current connection, a watch of one of its
            # series keeps an eye on the connection (a drop rejects it at once; no request is
            # sent): the whole batch's watch costs ccxt work for each of its series (~1 ms per
            # 100), a fifth of the collector's CPU at 4,000 series re-armed every WATCH_PAUSE.
            # Bounded, so that a change of the batch (a refusal's hold ending) is seen.
            keepalive = (
                connection is not None
                and idents == armed
                and self.exchange.candle_connection() is connection
            )
            try:
                if keepalive:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(KEEPALIVE_WATCH_S):
                            await self.exchange.watch_candles(pairs[:1])
                else:
                    await self.exchange.watch_candles(pairs)
            except ExchangeUnavailable as exc:
                if connection is not None:
                    self.counters.reconnects += 1
                    log.warning("candle stream lost (%s); reconnecting", exc)
                connection = None
                # A 60014 (too many requests) rejects the watch but leaves the connection open,
                # and ccxt keeps the subscriptions marked as sent: forget them, so that the next
                # watch sends them again (harmless after a disconnect, whose client is gone).
                self.exchange.forget_candle_subscriptions(pairs)
                await self.local.sleep(next(delays))
                continue
            except ExchangeRejected as exc:
                # A refusal that names no instrument: ccxt rejected every watch on the
                # connection. The batch is served over REST meanwhile, then subscribed again.
                pause = max(next(refusals), 30.0)
                log.warning(
                    "OKX refused a candle subscription of a batch of %d series (%s); REST "
                    "catch-ups serve them, subscribing again in %.0fs",
                    len(pairs), exc, pause,
                )  # fmt: skip
                self.exchange.forget_candle_subscriptions(pairs)
                await self.local.sleep(pause)
                continue
            refusals = self.options.delays()
            armed = idents
            current = self.exchange.candle_connection()
            if current is not connection:
                if connection is not None:  # replaced while we paused: a silent reconnect
                    self.counters.reconnects += 1
                connection = current
                delays = self.options.delays()  # a healthy connection resets the backoff
                # Catch up what closed while disconnected (only series that miss something).
                now = self._now()
                self._needs_catchup.update(
                    s.ident for s in live if s.missing_closed(now, self.options.since)
                )
            await self.local.sleep(WATCH_PAUSE)

    async def _supervise(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = self._now()
            local = self.local.monotonic()
            poll_due = poll_round_due(local, self._last_poll, self.options.poll_interval)
            if poll_due:
                self._last_poll = local
            for key, state in self.states.items():
                self._switch_mode(state, now)
                if self._wants_catchup(key, state, now, local, poll_due):
                    self._start_catchup(key, state)
            await self.local.sleep(TICK_SECONDS)

    def _switch_mode(self, state: SeriesState, now: int) -> None:
        if not state.streamable or self.options.mode != "auto":
            return
        stale = state.is_stale(now, self._started)
        if stale and not state.polling:
            state.polling = True
            self.counters.fallbacks += 1
            log.warning("%s: no websocket push for a while; polling over REST", state.key)
        elif not stale and state.polling:
            state.polling = False
            log.info("%s: websocket pushes resumed; back to streaming", state.key)

    def _wants_catchup(
        self, key: tuple[str, str], state: SeriesState, now: int, local: float, poll_due: bool
    ) -> bool:
        busy, held = state.catching_up, state.hold_until > local
        flagged = key in self._needs_catchup
        missing = state.missing_closed(now, self.options.since)
        awaited = 0.0  # local seconds a streamed series has lacked a closed candle
        if not missing:
            self._missing_since.pop(key, None)
        elif not (state.polling or busy or held or flagged):
            awaited = local - self._missing_since.setdefault(key, local)
        return catch_up_wanted(
            busy=busy,
            held=held,
            flagged=flagged,
            missing=missing,
            polling=state.polling,
            poll_due=poll_due,
            awaited=awaited,
        )

    def _start_catchup(self, key: tuple[str, str], state: SeriesState) -> None:
        if self._group is None:
            return
        state.catching_up = True
        self._needs_catchup.discard(key)
        self._missing_since.pop(key, None)
        task = self._group.create_task(self._catch_up(key, state))
        self._catchups.add(task)
        task.add_done_callback(self._catchups.discard)

    async def _catch_up(self, key: tuple[str, str], state: SeriesState) -> None:
        """Fetch over REST every closed candle from the first missing one to now."""
        # The first catch-up after start fills downtime (history); later ones are live polling.
        source: Source = "poll" if state.caught_up else "backfill"
        try:
            async with self._catchup_slots:
                self.counters.catchups += 1
                now = self._now()
                end = state.tf.floor(now)
                step = PAGE_BARS * state.tf.ms
                for start in range(state.next_due(self.options.since), end, step):
                    await self._catch_up_page(state, start, min(end, start + step), now, source)
                state.caught_up = True
        except InstrumentGone as exc:
            # Delisted, most likely: the list reload decides; until then no more requests.
            log.info("%s: OKX answered %s; checking the instrument list", state.key, exc)
            state.hold_until = self.local.monotonic() + GONE_HOLD_SECONDS
            self.watch.check_soon()
        except ExchangeRejected as exc:
            log.warning("%s: catch-up refused (%s); trying again later", state.key, exc)
            state.hold_until = self.local.monotonic() + GONE_HOLD_SECONDS
            self._needs_catchup.add(key)
        except ExchangeUnavailable as exc:
            # Retried after a hold that grows with each failure in a row, so that an outage
            # costs a request per series now and then, not a burst every tick.
            hold = retry_hold_seconds(state.failures)
            state.failures += 1
            state.hold_until = self.local.monotonic() + hold
            self._needs_catchup.add(key)
            level = logging.WARNING if state.failures == 1 else logging.DEBUG
            log.log(level, "%s: catch-up failed (%s); retrying in %.0fs", state.key, exc, hold)
        else:
            state.failures = 0
        finally:
            state.catching_up = False

    async def _catch_up_page(
        self, state: SeriesState, start: int, end: int, now: int, source: Source
    ) -> None:
        recent = start >= recent_from(state.tf, now)
        rows = await with_retries(
            lambda: self.exchange.fetch_candles(
                state.inst, state.tf, start, end, recent=recent, source=source
            ),
            what=f"{state.key} catch-up",
            attempts=4,
            delays=self.options.delays,
        )
        candles = closed_candles(rows)
        if candles:
            await self.writer.put(Item("candles", state.inst.inst_id, state.tf, candles))
            state.stored(candles[-1].ts)

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
