"""Live mark and index candles and open interest (`collect --series mark,index,oi`).

Beside the trade-candle `Collector`, with the same rules, and through its writer (one queue, one
journal file per kind per batch, queue order = precedence; `live.writer`):

- catch-up: at start, what the store lacks since `--since` is fetched at backfill speed
  (`backfill.derived`), open interest from OKX's rubik history where it keeps one;
- closed only: a websocket candle is stored when OKX pushes it with `confirm` "1"; REST rows too;
- polling fallback, per series: a mark or index series whose newest stored candle is more than a
  bar behind the last close (no push came: `--mode poll`, a lost connection) is fetched over
  REST from its newest stored candle (source `poll`); this also catches up after a reconnect;
- a refused subscription (OKX's 60018 for one channel and id): that series alone leaves the
  websocket and is polled at once, its subscription asked for again after
  `derived_parts.REFUSED_RETRY_SECONDS`; the others stay on the websocket;
- open interest is stored at every bar close `C` of each collected timeframe: the value in force
  at `C`, from the pushes, or without a recent push from OKX's current value asked right after
  `C`; a loop that comes late handles every close since, in order (`live.derived_oi` says how,
  and which closes stay gaps: status shows them, the log counts them);
- a polling round asks its series several at a time per endpoint (`live.derived_poll`), beside
  the loop, which meanwhile goes on taking closes;
- lifecycle: an instrument OKX answers 51001 for, or that the collector retires (its instrument
  list lost it), stops (one warning); one that joins the collector's selectors (a listing) gains
  its series (`follow`), from its listing or `--since`, polled up to now, then streamed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from okx_collector.backfill.derived import index_series, perpetuals
from okx_collector.errors import InstrumentGone
from okx_collector.exchange import OKX_BARS, WS_TIMEFRAMES, OkxExchange
from okx_collector.exchange_derived import (
    OI_CHANNEL,
    OI_PATH,
    PRICE_PATH,
    WS_CHANNEL_PREFIX,
    OkxDerived,
    PriceKind,
)
from okx_collector.instruments import Instrument
from okx_collector.live.derived_oi import OI_SETTLE_MS, OI_SETTLE_REAL_S, OpenInterestCloses
from okx_collector.live.derived_parts import ITEM_KIND, QueuedCatchup, Refusals, follow_stream
from okx_collector.live.derived_poll import PricePolling, PriceSeries
from okx_collector.live.writer import Item, Kind, Writer
from okx_collector.localclock import REAL_CLOCK, LocalClock
from okx_collector.models import OpenInterest, PriceCandle
from okx_collector.retry import BackoffFactory
from okx_collector.store import Store
from okx_collector.store.derived import PRICE_KIND
from okx_collector.timeframes import Timeframe

log = logging.getLogger("okx_collector.collect")

__all__ = ["OI_SETTLE_MS", "OI_SETTLE_REAL_S", "TICK_S", "DerivedLive"]

TICK_S = 0.01  # real seconds between checks: a close is seen (and OI asked) within a 3 s step
# Without open interest nothing is due at a close: the loop only polls and joins new series, and
# checking 100 times a second cost 3.5% of a core at 1,000 perpetuals.
IDLE_TICK_S = 0.2


class DerivedLive(OpenInterestCloses, PricePolling):
    """Mark/index candle and open-interest series of one collect run."""

    def __init__(
        self,
        exchange: OkxExchange,
        store: Store,
        writer: Writer,
        kinds: Sequence[str],
        instruments: Sequence[Instrument],
        timeframes: Sequence[Timeframe],
        now: Callable[[], int],
        *,
        mode: str,
        poll_interval: float,
        delays: BackoffFactory,
        on_refusal: Callable[[Kind], None] = lambda _: None,
        local: LocalClock = REAL_CLOCK,
    ) -> None:
        """`store` is read (what is stored); every row goes through `writer`, the collector's
        (it must run until `run` has returned); `on_refusal(kind)` counts each refusal. `local`
        times the loop, the settling of open interest, the refusal holds and the streams' waits
        (the collector's local clock)."""
        self.exchange = exchange
        self.derived = OkxDerived(exchange)
        self.store = store
        self.writer = writer
        self.kinds = list(kinds)
        self.instruments = list(instruments)
        self.timeframes = list(timeframes)
        self.now = now
        self.mode = mode
        self.poll_interval = poll_interval
        self.delays = delays
        self.local = local
        self.price_series: list[PriceSeries] = []
        self.oi_perps: list[Instrument] = []
        self.last: dict[tuple[str, str, str], int | None] = {}  # (kind, id, tf) -> newest ts
        self.first: dict[tuple[str, str, str], int] = {}  # joined series: their first candle
        self.pushes: dict[str, list[OpenInterest]] = {}  # perp -> recent pushes, oldest first
        self.gone: set[str] = set()
        self.refused = Refusals(local.monotonic, counted=on_refusal)
        self.rows = {"mark": 0, "index": 0, "oi": 0}  # rows queued for the writer
        self.sources: dict[str, int] = {}  # rows by source
        self.since = 0
        self._joining: list[Instrument] = []  # from `follow`, taken by the loop
        self._wakes: list[asyncio.Event] = []  # one per stream task (`_changed`)

    # -- set-up ----------------------------------------------------------------------------------

    def _plan(self, instruments: Sequence[Instrument]) -> list[PriceSeries]:
        """The series of `instruments` not collected yet (their stored edges read: blocking)."""
        have = {(p, sid, tf.name) for p, _, sid, tf in self.price_series}
        new: list[PriceSeries] = []
        if "mark" in self.kinds:
            for perp in perpetuals(self.exchange, instruments):
                new += [("mark", perp, perp.inst_id, tf) for tf in self.timeframes]
        if "index" in self.kinds:
            for inst in index_series(self.derived, instruments):
                sid = self.derived.index_id(inst)
                new += [("index", inst, sid, tf) for tf in self.timeframes]
        new = [s for s in new if (s[0], s[2], s[3].name) not in have]
        for price, _, sid, tf in new:
            self.last[(price, sid, tf.name)] = self.store.kind_edge(
                PRICE_KIND[price], sid, tf, newest=True
            )
        if "oi" in self.kinds:
            known = {p.inst_id for p in self.oi_perps}
            self.oi_perps += [
                p for p in perpetuals(self.exchange, instruments) if p.inst_id not in known
            ]
        self.price_series += new
        return new

    async def run(self, stop: asyncio.Event, since: int) -> None:
        """Catch up, then follow until `stop`; everything is queued for the writer on return."""
        self.since = since
        await asyncio.to_thread(self._plan, self.instruments)
        now = self.now()
        backfill = QueuedCatchup(
            self.exchange, self.store, self.writer, self._stored, self._count,
            delays=self.delays, clock=self.local,
        )  # fmt: skip
        await backfill.run(self.kinds, self.instruments, self.timeframes, since, now, now, stop)
        async with asyncio.TaskGroup() as group:
            if self.mode != "poll":
                self.derived.attach_sinks(
                    self._on_candle, self._on_oi, lambda *_: None, self.on_refused
                )
                for price in ("mark", "index"):
                    if price in self.kinds:
                        group.create_task(self._watch(stop, price))
                if "oi" in self.kinds:
                    group.create_task(self._watch_oi(stop))
            group.create_task(self._loop(stop))

    # -- lifecycle (told by the collector's instrument list) -------------------------------------

    def follow(self, instruments: Sequence[Instrument]) -> None:
        """What the selectors name now: instruments not followed yet join (a listing)."""
        known = {i.inst_id for i in self.instruments} | {i.inst_id for i in self._joining}
        self._joining += [i for i in instruments if i.inst_id not in known]

    def retire(self, inst_id: str) -> None:
        """The collector retired `inst_id` (OKX's instrument list lost it)."""
        self._stop_series(inst_id, "no longer listed by OKX")
        self._changed()

    async def _join(self) -> None:
        joining, self._joining = self._joining, []
        self.instruments += joining
        new = await asyncio.to_thread(self._plan, joining)
        self._changed()
        for inst in joining:
            first = max(self.since, inst.list_time or self.since)
            for price, series_inst, sid, tf in new:
                if series_inst is inst:
                    self.first[(price, sid, tf.name)] = tf.ceil(first)
            log.info(
                "%s joined: its mark, index and open-interest series start (%s)",
                inst.inst_id, ", ".join(f"{p} {s} {tf.name}" for p, i, s, tf in new if i is inst),
            )  # fmt: skip

    # -- websockets ------------------------------------------------------------------------------

    def _on_candle(
        self, price: PriceKind, sid: str, tf: Timeframe, ts: int, candle: PriceCandle | None
    ) -> None:
        key = (price, sid, tf.name)
        if candle is None or key not in self.last:
            return
        last = self.last[key]
        due = self.first.get(key) if last is None else last + tf.ms
        if due is not None and candle.ts != due:
            # Already queued, or candles between were missed (a reconnect, a join): the poll
            # fetches from the newest stored one, this one included, so nothing is skipped.
            return
        if self.writer.offer(Item(ITEM_KIND[price], sid, tf, [candle])):
            self._stored(key, candle.ts)
            self._count(price, 1, "ws")
        # (else the writer's queue is full: the series falls behind, and the poll fetches it)

    def on_refused(self, channel: str, series_id: str, message: str) -> None:
        """OKX refused one subscription (60018): that series is polled at once, and subscribed
        again after REFUSED_RETRY_SECONDS. The poll tells a delisting (51001: the series stop,
        one warning) from a listed id refused (one warning, at its first poll)."""
        self.refused.add(channel, series_id, message)
        self._changed()

    def _streamed(self, price: PriceKind) -> list[tuple[Instrument, Timeframe]]:
        return [
            (inst, tf)
            for p, inst, sid, tf in self.price_series
            if p == price
            and tf.name in WS_TIMEFRAMES
            and inst.inst_id not in self.gone
            and not self.refused.active(WS_CHANNEL_PREFIX[p] + OKX_BARS[tf.name], sid)
        ]

    def _oi_streamed(self) -> list[Instrument]:
        return [
            p
            for p in self.oi_perps
            if p.inst_id not in self.gone and not self.refused.active(OI_CHANNEL, p.inst_id)
        ]

    def _changed(self) -> None:
        """The streamed sets changed (a refusal, a join, a retirement): every watch restarts,
        naming the series streamed now (a watch otherwise returns at its next push, and one
        whose only series was refused would never return)."""
        for wake in self._wakes:
            wake.set()

    async def _watch(self, stop: asyncio.Event, price: PriceKind) -> None:
        await follow_stream(
            stop, f"{price} candle",
            lambda: self._streamed(price),
            lambda live: self.derived.watch_price_candles(price, live),
            self._wake(), self.delays,
            keep=lambda one: self.derived.keep_price_candles(price, one),
            connection=lambda: self.derived.connection(PRICE_PATH), clock=self.local,
        )  # fmt: skip

    async def _watch_oi(self, stop: asyncio.Event) -> None:
        # Changes made while the connection was down were never pushed: the pushes before it
        # no longer tell the value at a later close (the first push after it does, from its ts).
        await follow_stream(
            stop, "open-interest", self._oi_streamed, self.derived.watch_open_interest,
            self._wake(), self.delays, on_lost=self.pushes.clear,
            keep=self.derived.keep_open_interest,
            connection=lambda: self.derived.connection(OI_PATH), clock=self.local,
        )  # fmt: skip

    def _wake(self) -> asyncio.Event:
        wake = asyncio.Event()
        self._wakes.append(wake)
        return wake

    # -- the loop: closes, polling, joins --------------------------------------------------------

    async def _loop(self, stop: asyncio.Event) -> None:
        self._oi_begin(self.now())
        last_poll = 0.0
        polling: asyncio.Task[None] | None = None  # a polling round runs beside the closes
        try:
            while not stop.is_set():
                if self._joining:
                    await self._join()
                    last_poll = 0.0  # the new series are polled up to now at once
                await self._oi_closes(stop)
                if polling is not None and polling.done():
                    polling.result()  # (its error, if any, ends the run)
                    polling = None
                if polling is None and self.local.monotonic() - last_poll >= self.poll_interval:
                    last_poll = self.local.monotonic()
                    polling = asyncio.create_task(self._poll(self.now(), stop))
                await self.local.sleep(TICK_S if self.oi_perps else IDLE_TICK_S)
        finally:
            if polling is not None:  # (at `stop` it is ending by itself: see `_poll`)
                polling.cancel()
                await asyncio.wait([polling])
                if not polling.cancelled():
                    polling.result()

    def _stored(self, key: tuple[str, str, str], ts: int) -> None:
        last = self.last.get(key)
        self.last[key] = ts if last is None else max(last, ts)

    def _count(self, what: str, rows: int, source: str) -> None:
        self.rows[what] += rows
        self.sources[source] = self.sources.get(source, 0) + rows

    def _gone(self, exc: InstrumentGone) -> None:
        self._stop_series(exc.inst_id, "OKX answers 51001, no such instrument")

    def _stop_series(self, inst_id: str, why: str) -> None:
        """Its series stop: no more polls, subscriptions, nor pushes stored; one warning per
        instrument. An index series goes on if another collected instrument is behind it."""
        if inst_id in self.gone:
            return
        self.gone.add(inst_id)
        for n, (price, inst, sid, tf) in enumerate(self.price_series):
            if inst.inst_id != inst_id:
                continue
            heir = price == "index" and next(
                (
                    other
                    for other in self.instruments
                    if other.inst_id not in self.gone and self.derived.index_id(other) == sid
                ),
                None,
            )
            if heir:
                self.price_series[n] = (price, heir, sid, tf)
            else:
                self.last.pop((price, sid, tf.name), None)
        log.warning("%s: %s (delisted?): its mark, index and oi series stop", inst_id, why)
