"""The collector's websocket candle streams: batches of series kept subscribed, reconnected with
backoff, and caught up over REST after a reconnect.

A mixin of `Collector`, kept apart because it is one job; the attributes it uses are the
collector's, declared in live/parts.py.
"""

from __future__ import annotations

import asyncio
import logging

from okx_collector.errors import ExchangeRejected, ExchangeUnavailable
from okx_collector.instruments import Instrument
from okx_collector.live.batch_refusal import pause_refused_batch
from okx_collector.live.parts import CollectorParts
from okx_collector.live.series import SeriesState
from okx_collector.localclock import bounded

log = logging.getLogger("okx_collector.collect")

BATCH_SERIES = 100  # series per websocket subscribe request (OKX: 480 subscribe ops/hour/conn)
WATCH_PAUSE = 0.2  # seconds between re-arming a batch's watch call (pushes flow regardless)
KEEPALIVE_WATCH_S = 1.0  # a subscribed batch's one-series watch is renewed at least this often


class Streams(CollectorParts):
    """The collector's candle streams."""

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
                    await bounded(
                        self.local, self.exchange.watch_candles(pairs[:1]), KEEPALIVE_WATCH_S
                    )
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
                # A refusal that names no instrument: the batch is served over REST meanwhile.
                # Its subscriptions are forgotten, so the next watch names the whole batch (a
                # keepalive of one series would subscribe that one alone).
                armed = []
                await pause_refused_batch(
                    exc, pairs, forget=self.exchange.forget_candle_subscriptions,
                    waits=refusals, local=self.local, kind="candle", unit="series",
                    served="REST catch-ups serve them",
                )  # fmt: skip
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
