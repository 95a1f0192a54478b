"""Live mark and index candles and open interest (`collect --series mark,index,oi`).

Beside the trade-candle `Collector`, with the same rules:

- catch-up: at start, what the store lacks since `--since` is fetched at backfill speed
  (`backfill.derived`), open interest from OKX's rubik history where it keeps one;
- closed only: a websocket candle is stored when OKX pushes it with `confirm` "1"; REST rows too;
- polling fallback, per series: a mark or index series whose newest stored candle is more than a
  bar behind the last close (no push came: `--mode poll`, a lost connection, a refused
  subscription) is fetched over REST from its newest stored candle (source `poll`); this also
  catches up after a reconnect;
- open interest is stored at every bar close `C` of each collected timeframe: the value in force
  at `C`, which is the newest pushed value with `ts <= C` (OKX pushes a change at each 3 s step, so
  it is taken `OI_SETTLE_MS` after `C`), or, without a recent push, OKX's `public/open-interest`
  answer if it was made less than a 3 s step after `C` (no later change can be in it); a close
  neither gives is left as a gap (status shows it; a backfill fills it from the rubik history for
  5m and longer);
- lifecycle: an instrument OKX answers 51001 for is dropped from the live set (logged once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from okx_collector.backfill.derived import DerivedBackfiller, index_series, perpetuals
from okx_collector.errors import ExchangeRejected, ExchangeUnavailable, InstrumentGone
from okx_collector.exchange import WS_TIMEFRAMES, OkxExchange
from okx_collector.exchange_derived import OkxDerived, PriceKind
from okx_collector.instruments import Instrument
from okx_collector.models import OpenInterest, PriceCandle
from okx_collector.retry import BackoffFactory
from okx_collector.store import Store
from okx_collector.store.derived import PRICE_KIND
from okx_collector.timeframes import Timeframe

log = logging.getLogger("okx_collector.collect")

OI_STEP_MS = 3_000  # OKX updates open interest on a 3 s grid
# A close's push has arrived this long after it (OKX pushes each 3 s step's change; the margin
# covers a push's latency and a feed that batches several steps).
OI_SETTLE_MS = 10_000
STALE_OI_MS = 60_000  # no open-interest push for this long: ask REST at each close
POLL_GRACE_MS = 5_000  # a close not pushed this long after it is fetched over REST
TICK_S = 0.01  # real seconds between checks: a close is seen (and OI asked) within a 3 s step


class DerivedLive:
    """Mark/index candle and open-interest series of one collect run."""

    def __init__(
        self,
        exchange: OkxExchange,
        store: Store,
        kinds: Sequence[str],
        instruments: Sequence[Instrument],
        timeframes: Sequence[Timeframe],
        now: Callable[[], int],
        *,
        mode: str,
        poll_interval: float,
        delays: BackoffFactory,
    ) -> None:
        self.exchange = exchange
        self.derived = OkxDerived(exchange)
        self.store = store
        self.kinds = list(kinds)
        self.instruments = list(instruments)
        self.timeframes = list(timeframes)
        self.now = now
        self.mode = mode
        self.poll_interval = poll_interval
        self.delays = delays
        self.price_series: list[tuple[PriceKind, Instrument, str, Timeframe]] = []
        self.oi_perps: list[Instrument] = []
        self.last: dict[tuple[str, str, str], int | None] = {}  # (kind, id, tf) -> newest ts
        self.pending: dict[tuple[PriceKind, str, str], list[PriceCandle]] = {}
        self.pushes: dict[str, list[OpenInterest]] = {}  # perp -> recent pushes, oldest first
        self.gone: set[str] = set()
        self.rows = {"mark": 0, "index": 0, "oi": 0}
        self.sources: dict[str, int] = {}  # rows by source

    # -- set-up ----------------------------------------------------------------------------------

    def _plan(self) -> None:
        if "mark" in self.kinds:
            for perp in perpetuals(self.exchange, self.instruments):
                self.price_series += [("mark", perp, perp.inst_id, tf) for tf in self.timeframes]
        if "index" in self.kinds:
            for inst in index_series(self.derived, self.instruments):
                sid = self.derived.index_id(inst)
                self.price_series += [("index", inst, sid, tf) for tf in self.timeframes]
        if "oi" in self.kinds:
            self.oi_perps = perpetuals(self.exchange, self.instruments)
        for price, _, sid, tf in self.price_series:
            kind = PRICE_KIND[price]
            self.last[(price, sid, tf.name)] = self.store.kind_edge(kind, sid, tf, newest=True)

    async def run(self, stop: asyncio.Event, since: int) -> None:
        """Catch up, then follow until `stop`; pending candles are written before returning."""
        await asyncio.to_thread(self._plan)
        now = self.now()
        backfill = DerivedBackfiller(self.exchange, self.store, delays=self.delays)
        await backfill.run(self.kinds, self.instruments, self.timeframes, since, now, now, stop)
        for price, _, sid, tf in self.price_series:  # what the catch-up stored
            kind = PRICE_KIND[price]
            edge = await asyncio.to_thread(self.store.kind_edge, kind, sid, tf, newest=True)
            self.last[(price, sid, tf.name)] = edge
        async with asyncio.TaskGroup() as group:
            if self.mode != "poll":
                self.derived.attach_sinks(self._on_candle, self._on_oi, lambda *_: None)
                for price in ("mark", "index"):
                    batch = [(i, tf) for p, i, _, tf in self.price_series if p == price]
                    batch = [(i, tf) for i, tf in batch if tf.name in WS_TIMEFRAMES]
                    if batch:
                        group.create_task(self._watch(stop, price, batch))
                if self.oi_perps:
                    group.create_task(self._watch_oi(stop))
            group.create_task(self._loop(stop))

    # -- websockets ------------------------------------------------------------------------------

    def _on_candle(
        self, price: PriceKind, sid: str, tf: Timeframe, ts: int, candle: PriceCandle | None
    ) -> None:
        if candle is not None:
            self.pending.setdefault((price, sid, tf.name), []).append(candle)

    def _on_oi(self, inst_id: str, oi: OpenInterest) -> None:
        seen = self.pushes.setdefault(inst_id, [])
        seen.append(oi)
        del seen[:-64]  # a few minutes of 3 s steps: enough for every close

    async def _watch(
        self, stop: asyncio.Event, price: PriceKind, batch: list[tuple[Instrument, Timeframe]]
    ) -> None:
        waits = self.delays()
        while not stop.is_set():
            live = [(i, tf) for i, tf in batch if i.inst_id not in self.gone]
            if not live:
                return
            try:
                await _until_stop(stop, self.derived.watch_price_candles(price, live))
                waits = self.delays()
            except (ExchangeUnavailable, ExchangeRejected) as exc:
                log.info("%s candle stream: %s; polling meanwhile", price, exc)
                await asyncio.sleep(next(waits))

    async def _watch_oi(self, stop: asyncio.Event) -> None:
        waits = self.delays()
        while not stop.is_set():
            live = [p for p in self.oi_perps if p.inst_id not in self.gone]
            if not live:
                return
            try:
                await _until_stop(stop, self.derived.watch_open_interest(live))
                waits = self.delays()
            except (ExchangeUnavailable, ExchangeRejected) as exc:
                log.info("open-interest stream: %s; polling meanwhile", exc)
                await asyncio.sleep(next(waits))

    # -- the loop: writes, closes, polling -------------------------------------------------------

    async def _loop(self, stop: asyncio.Event) -> None:
        now = self.now()
        settled = {tf.name: tf.floor(now - OI_SETTLE_MS) for tf in self.timeframes}
        asked = {tf.name: tf.floor(now) for tf in self.timeframes}  # closes asked over REST
        last_poll = 0.0
        while True:
            stopping = stop.is_set()
            await self._flush()
            if stopping:
                return
            now = self.now()
            for tf in self.timeframes:
                if self.oi_perps and tf.floor(now) > asked[tf.name]:
                    asked[tf.name] = tf.floor(now)
                    await self._oi_from_rest(tf, asked[tf.name])
                close = tf.floor(now - OI_SETTLE_MS)
                if self.oi_perps and close > settled[tf.name]:
                    settled[tf.name] = close
                    await self._oi_from_pushes(tf, close)
            if time.monotonic() - last_poll >= self.poll_interval:
                last_poll = time.monotonic()
                await self._poll(now)
            await asyncio.sleep(TICK_S)

    async def _flush(self) -> None:
        if not self.pending:
            return
        taken, self.pending = self.pending, {}
        for price in ("mark", "index"):
            items = [
                (sid, Timeframe.parse(tf), rows)
                for (p, sid, tf), rows in taken.items()
                if p == price
            ]
            if items:
                written = await asyncio.to_thread(self.store.write_price_candles_many, price, items)
                self._count(price, written, "ws")
                for sid, tf, rows in items:
                    key = (price, sid, tf.name)
                    newest = max(r.ts for r in rows)
                    self.last[key] = max(self.last.get(key) or newest, newest)

    def _count(self, what: str, rows: int, source: str) -> None:
        self.rows[what] += rows
        self.sources[source] = self.sources.get(source, 0) + rows

    async def _poll(self, now: int) -> None:
        """REST for every mark/index series more than a bar behind (after a grace period)."""
        for price, inst, sid, tf in self.price_series:
            if inst.inst_id in self.gone:
                continue
            last_closed = tf.floor(now) - tf.ms
            last = self.last.get((price, sid, tf.name))
            if last is not None and last >= last_closed:
                continue
            in_grace = now - tf.floor(now) < POLL_GRACE_MS
            if (
                self.mode != "poll"
                and in_grace
                and last is not None
                and last >= last_closed - tf.ms
            ):
                continue  # only the newest close is missing: its push may still come
            start = tf.floor(now) - 1440 * tf.ms if last is None else last + tf.ms
            try:
                rows = await self.derived.fetch_price_candles(
                    price, inst, tf, start, tf.floor(now), source="poll"
                )
            except InstrumentGone as exc:
                self._gone(exc)
                continue
            except (ExchangeUnavailable, ExchangeRejected) as exc:
                log.debug("%s %s %s poll failed: %s", price, sid, tf.name, exc)
                continue
            closed = [r.candle for r in rows if r.confirmed]
            if closed:
                written = await asyncio.to_thread(
                    self.store.write_price_candles, price, sid, tf, closed
                )
                self._count(price, written, "poll")
                self.last[(price, sid, tf.name)] = closed[-1].ts

    def _pushed(self, inst_id: str) -> bool:
        """Whether open interest of `inst_id` streams (a push in the last `STALE_OI_MS`)."""
        seen = self.pushes.get(inst_id)
        if not seen or self.mode == "poll":
            return False
        return self.now() - seen[-1].ts < STALE_OI_MS

    async def _oi_from_pushes(self, tf: Timeframe, close: int) -> None:
        """At `close` + OI_SETTLE_MS: the newest pushed value with `ts <= close`, per streamed
        perpetual."""
        items: list[tuple[str, Timeframe, Sequence[OpenInterest]]] = []
        for perp in self.oi_perps:
            if perp.inst_id in self.gone or not self._pushed(perp.inst_id):
                continue
            before = [p for p in self.pushes[perp.inst_id] if p.ts <= close]
            if before:
                items.append((perp.inst_id, tf, [before[-1]._replace(ts=close)]))
        await self._write_oi(items)

    async def _oi_from_rest(self, tf: Timeframe, close: int) -> None:
        """Right after `close`: OKX's current value for each perpetual not streaming, kept if
        OKX made it within the 3 s step that starts at `close` (the value in force then)."""
        items: list[tuple[str, Timeframe, Sequence[OpenInterest]]] = []
        for perp in self.oi_perps:
            if perp.inst_id in self.gone or self._pushed(perp.inst_id):
                continue
            try:
                answer = await self.derived.fetch_open_interest(perp)
            except InstrumentGone as exc:
                self._gone(exc)
                continue
            except (ExchangeUnavailable, ExchangeRejected) as exc:
                log.debug("open interest poll of %s failed: %s", perp.inst_id, exc)
                continue
            if close <= answer.ts < close + OI_STEP_MS:
                items.append((perp.inst_id, tf, [answer._replace(ts=close)]))
        await self._write_oi(items)

    async def _write_oi(self, items: list[tuple[str, Timeframe, Sequence[OpenInterest]]]) -> None:
        if items:
            written = await asyncio.to_thread(self.store.write_open_interest_many, items)
            for _, _, rows in items:
                self.sources[rows[0].source] = self.sources.get(rows[0].source, 0) + 1
            self.rows["oi"] += written

    def _gone(self, exc: InstrumentGone) -> None:
        if exc.inst_id not in self.gone:
            self.gone.add(exc.inst_id)
            log.warning("%s: OKX no longer knows it (delisted?): mark, index and oi stop", exc)


async def _until_stop(stop: asyncio.Event, watch: Coroutine[Any, Any, None]) -> None:
    """Await a watch call, or return once `stop` is set (the watch is then cancelled)."""
    task = asyncio.ensure_future(watch)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, stopper):
            if not t.done():
                t.cancel()
        for t in (task, stopper):
            try:
                await t
            except asyncio.CancelledError:
                pass
            except (ExchangeUnavailable, ExchangeRejected):
                if t is task:
                    raise
