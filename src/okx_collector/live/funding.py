"""Live funding: observations of the current rate, and the settled rate after each funding time."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from okx_collector.errors import ExchangeRejected, ExchangeUnavailable, InstrumentGone
from okx_collector.instruments import Instrument
from okx_collector.live.batch_refusal import pause_refused_batch
from okx_collector.live.ports import FundingExchange
from okx_collector.live.series import poll_round_due
from okx_collector.live.writer import Item, Writer
from okx_collector.localclock import REAL_CLOCK, LocalClock
from okx_collector.models import FundingObservation
from okx_collector.retry import BackoffFactory, with_retries

if TYPE_CHECKING:
    from okx_collector.live.collector import CollectorOptions

log = logging.getLogger("okx_collector.collect")

STALE_PUSH_MS = 180_000  # OKX pushes funding every 30-90 s; two missed pushes means poll instead
SETTLE_LAG_MS = 1_000  # ask for the settled rate a moment after the funding time
# OKX keeps a funding time `settState: processing` for a while before its row is in the history
# (OKX.md §7): ask again this often (local seconds) rather than on every tick.
SETTLE_RETRY_SECONDS = 5.0
HOLD_SECONDS = 60.0  # OKX answered 51001 or refused: no request for this instrument for a while
REFUSED_RETRY_SECONDS = 600.0  # a refused funding subscription is asked for again after this


class FundingTracker:
    """Per perpetual: stream or poll the current rate, fetch each settled rate once it exists."""

    def __init__(
        self,
        exchange: FundingExchange,
        writer: Writer,
        instruments: Sequence[Instrument],
        last_settled: dict[str, int | None],
        now: Callable[[], int],
        on_gone: Callable[[], None] = lambda: None,
        local: LocalClock = REAL_CLOCK,
    ) -> None:
        """`now()` is exchange ms; `local` times the holds, retries and the poll cadence."""
        self.exchange = exchange
        self.local = local
        self.writer = writer
        self.instruments = list(instruments)
        self.now = now
        self.last_settled = dict(last_settled)  # inst_id -> newest stored funding_time
        self.next_settlement: dict[str, int] = {}  # inst_id -> upcoming funding time, from data
        self.last_push: dict[str, int] = {}  # inst_id -> exchange time of the last push
        self._by_id = {inst.inst_id: inst for inst in self.instruments}
        self._on_gone = on_gone  # OKX answered 51001: have the instrument list checked
        self._hold: dict[str, float] = {}  # inst_id -> monotonic time before which no request
        self._refused_until: dict[str, float] = {}  # inst_id -> when to subscribe it again
        # instIds the last instrument list lacked: ccxt's markets no longer have them, so a
        # watch naming one would fail its whole batch (they are polled until the next list)
        self.unlisted: set[str] = set()

    def add(self, inst: Instrument) -> bool:
        """Follow a new perpetual (a listing); False if it is followed already."""
        if inst.inst_id in self._by_id:
            return False
        self._by_id[inst.inst_id] = inst
        self.instruments.append(inst)
        self.last_settled.setdefault(inst.inst_id, None)
        return True

    def remove(self, inst_id: str) -> None:
        """Stop following `inst_id` (delisted); its stream task ends at its next wake-up."""
        inst = self._by_id.pop(inst_id, None)
        if inst is not None:
            self.instruments.remove(inst)

    def refused(self, inst_id: str, channel: str) -> None:
        """OKX refused the funding subscription of `inst_id`: it is polled (no pushes arrive)."""
        if channel == "funding-rate" and inst_id in self._by_id:
            self.last_push.pop(inst_id, None)
            self._refused_until[inst_id] = self.local.monotonic() + REFUSED_RETRY_SECONDS

    def _held(self, inst_id: str) -> bool:
        return self._hold.get(inst_id, 0.0) > self.local.monotonic()

    def _rejected(self, inst: Instrument, exc: ExchangeRejected, what: str) -> None:
        self._hold[inst.inst_id] = self.local.monotonic() + HOLD_SECONDS
        if isinstance(exc, InstrumentGone):
            log.info(
                "%s %s: OKX answered %s; checking the instrument list", inst.inst_id, what, exc
            )
            self._on_gone()
        else:
            log.warning("%s %s refused (%s); trying again later", inst.inst_id, what, exc)

    def on_push(self, inst_id: str, obs: FundingObservation) -> None:
        if inst_id not in self._by_id:
            return
        self.last_push[inst_id] = self.now()
        self._observe(inst_id, obs)
        self.writer.offer(Item("funding_live", inst_id, None, [obs]))

    def _observe(self, inst_id: str, obs: FundingObservation) -> None:
        self.next_settlement[inst_id] = obs.funding_time

    async def stream(
        self, batch: Sequence[Instrument], stop: asyncio.Event, delays: BackoffFactory
    ) -> None:
        """Keep a batch of funding subscriptions alive (one subscribe request for the batch:
        OKX allows 480 a hour per connection); the data arrives through `on_push`. Retired and
        refused instruments are left out; the batch ends when none of it is followed."""
        waits = delays()
        while not stop.is_set():
            local = self.local.monotonic()
            followed = [inst for inst in batch if inst.inst_id in self._by_id]
            if not followed:
                return
            live = [
                i for i in followed
                if self._refused_until.get(i.inst_id, 0.0) <= local
                and i.inst_id not in self.unlisted
            ]  # fmt: skip
            if not live:
                await self.local.sleep(1.0)
                continue
            try:
                await self.exchange.watch_funding(live)
                waits = delays()
            except ExchangeUnavailable as exc:
                log.debug("funding stream lost: %s", exc)
                # After a 60014 ccxt keeps the subscriptions marked as sent: send them again.
                self.exchange.forget_funding_subscriptions(live)
                await self.local.sleep(next(waits))
            except ExchangeRejected as exc:
                # A refusal ccxt could not attribute: polled meanwhile, subscribed again later.
                await pause_refused_batch(
                    exc, live, forget=self.exchange.forget_funding_subscriptions, waits=waits,
                    local=self.local, kind="funding", unit="perpetuals", served="polling them",
                )  # fmt: skip

    async def run(self, stop: asyncio.Event, options: CollectorOptions) -> None:
        await self._settle_all(options, initial=True)
        last_poll = self.local.monotonic()
        while not stop.is_set():
            await self.local.sleep(0.5)
            local = self.local.monotonic()
            if poll_round_due(local, last_poll, options.poll_interval):
                last_poll = local
                await self._poll_current(options)
            await self._settle_all(options, initial=False)

    async def _poll_current(self, options: CollectorOptions) -> None:
        now = self.now()
        for inst in list(self.instruments):
            pushed = self.last_push.get(inst.inst_id)
            if options.mode != "poll" and pushed is not None and now - pushed < STALE_PUSH_MS:
                continue  # the stream is alive
            if self._held(inst.inst_id):
                continue
            try:
                obs = await self.exchange.fetch_funding_current(inst, source="poll")
            except ExchangeUnavailable as exc:
                log.debug("funding poll for %s failed: %s", inst.inst_id, exc)
                continue
            except ExchangeRejected as exc:
                self._rejected(inst, exc, "funding poll")
                continue
            obs = obs._replace(ts=obs.ts or now)
            self._observe(inst.inst_id, obs)
            await self.writer.put(Item("funding_live", inst.inst_id, None, [obs]))

    async def _settle_all(self, options: CollectorOptions, *, initial: bool) -> None:
        now = self.now()
        for inst in list(self.instruments):
            upcoming = self.next_settlement.get(inst.inst_id)
            if not initial and (upcoming is None or now < upcoming + SETTLE_LAG_MS):
                continue
            if self._held(inst.inst_id):
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
                    clock=self.local,
                )
            except ExchangeUnavailable as exc:
                log.warning(
                    "settled funding for %s not fetched (%s); will retry", inst.inst_id, exc
                )
                continue
            except ExchangeRejected as exc:
                self._rejected(inst, exc, "funding history")
                continue
            if upcoming is not None and any(r.funding_time >= upcoming for r in rates):
                self.next_settlement.pop(inst.inst_id, None)
            elif upcoming is not None:  # not settled yet (settState "processing")
                self._hold[inst.inst_id] = self.local.monotonic() + SETTLE_RETRY_SECONDS
            if rates:
                self.last_settled[inst.inst_id] = rates[-1].funding_time
                await self.writer.put(Item("funding", inst.inst_id, None, rates))
