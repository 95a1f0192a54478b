"""Live funding: observations of the current rate, and the settled rate after each funding time."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from okx_collector.errors import ExchangeRejected, ExchangeUnavailable
from okx_collector.exchange import Instrument, OkxExchange
from okx_collector.live.writer import Item, Writer
from okx_collector.models import FundingObservation
from okx_collector.retry import BackoffFactory, with_retries

if TYPE_CHECKING:
    from okx_collector.live.collector import CollectorOptions

log = logging.getLogger("okx_collector.collect")

STALE_PUSH_MS = 180_000  # OKX pushes funding every 30-90 s; two missed pushes means poll instead
SETTLE_LAG_MS = 1_000  # ask for the settled rate a moment after the funding time


class FundingTracker:
    """Per perpetual: stream or poll the current rate, fetch each settled rate once it exists."""

    def __init__(
        self,
        exchange: OkxExchange,
        writer: Writer,
        instruments: Sequence[Instrument],
        last_settled: dict[str, int | None],
        now: Callable[[], int],
    ) -> None:
        self.exchange = exchange
        self.writer = writer
        self.instruments = list(instruments)
        self.now = now
        self.last_settled = dict(last_settled)  # inst_id -> newest stored funding_time
        self.next_settlement: dict[str, int] = {}  # inst_id -> upcoming funding time, from data
        self.last_push: dict[str, int] = {}  # inst_id -> exchange time of the last push
        self._by_id = {inst.inst_id: inst for inst in self.instruments}

    def on_push(self, inst_id: str, obs: FundingObservation) -> None:
        if inst_id not in self._by_id:
            return
        self.last_push[inst_id] = self.now()
        self._observe(inst_id, obs)
        self.writer.offer(Item("funding_live", inst_id, None, [obs]))

    def _observe(self, inst_id: str, obs: FundingObservation) -> None:
        self.next_settlement[inst_id] = obs.funding_time

    async def stream(self, inst: Instrument, stop: asyncio.Event, delays: BackoffFactory) -> None:
        waits = delays()
        while not stop.is_set():
            try:
                await self.exchange.watch_funding(inst)
                waits = delays()
            except ExchangeUnavailable as exc:
                log.debug("funding stream for %s lost: %s", inst.inst_id, exc)
                await asyncio.sleep(next(waits))
            except ExchangeRejected as exc:
                log.error("funding subscription for %s refused: %s", inst.inst_id, exc)
                return

    async def run(self, stop: asyncio.Event, options: CollectorOptions) -> None:
        await self._settle_all(options, initial=True)
        last_poll = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.5)
            if time.monotonic() - last_poll >= options.poll_interval:
                last_poll = time.monotonic()
                await self._poll_current(options)
            await self._settle_all(options, initial=False)

    async def _poll_current(self, options: CollectorOptions) -> None:
        now = self.now()
        for inst in self.instruments:
            pushed = self.last_push.get(inst.inst_id)
            if options.mode != "poll" and pushed is not None and now - pushed < STALE_PUSH_MS:
                continue  # the stream is alive
            try:
                obs = await self.exchange.fetch_funding_current(inst, source="poll")
            except ExchangeUnavailable as exc:
                log.debug("funding poll for %s failed: %s", inst.inst_id, exc)
                continue
            obs = obs._replace(ts=obs.ts or now)
            self._observe(inst.inst_id, obs)
            await self.writer.put(Item("funding_live", inst.inst_id, None, [obs]))

    async def _settle_all(self, options: CollectorOptions, *, initial: bool) -> None:
        now = self.now()
        for inst in self.instruments:
            upcoming = self.next_settlement.get(inst.inst_id)
            if not initial and (upcoming is None or now < upcoming + SETTLE_LAG_MS):
                continue
            last = self.last_settled.get(inst.inst_id)
            start = options.since if last is None else last + 1
            try:
                rates = await with_retries(
                    functools.partial(
                        self.exchange.fetch_funding_history, inst, start, now + 1, "poll"
                    ),
                    what=f"{inst.inst_id} funding history",
                    attempts=3,
                    delays=options.delays,
                )
            except ExchangeUnavailable as exc:
                log.warning(
                    "settled funding for %s not fetched (%s); will retry", inst.inst_id, exc
                )
                continue
            if upcoming is not None and any(r.funding_time >= upcoming for r in rates):
                self.next_settlement.pop(inst.inst_id, None)
            if rates:
                self.last_settled[inst.inst_id] = rates[-1].funding_time
                await self.writer.put(Item("funding", inst.inst_id, None, rates))
