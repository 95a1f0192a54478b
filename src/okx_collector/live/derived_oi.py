"""Open interest at each bar close of the live derived series (`live.derived`): from the pushes
of a streamed perpetual, or from OKX's current value asked right after the close.

A mixin of `DerivedLive`, kept apart because it is one job; the attributes are its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from okx_collector.errors import ExchangeRejected, ExchangeUnavailable, InstrumentGone
from okx_collector.exchange_derived import OI_CHANNEL, OkxDerived
from okx_collector.instruments import Instrument
from okx_collector.live.derived_parts import Refusals
from okx_collector.live.writer import Item, Writer
from okx_collector.models import OpenInterest
from okx_collector.timeframes import Timeframe

log = logging.getLogger("okx_collector.collect")

OI_STEP_MS = 3_000  # OKX updates open interest on a 3 s grid
STALE_OI_MS = 60_000  # no open-interest push for this long: ask REST at each close


class OpenInterestCloses:
    """The derived series' open interest at bar closes; the attributes are `DerivedLive`'s."""

    derived: OkxDerived
    writer: Writer
    now: Callable[[], int]
    mode: str
    oi_perps: list[Instrument]
    pushes: dict[str, list[OpenInterest]]
    gone: set[str]
    refused: Refusals

    def _count(self, what: str, rows: int, source: str) -> None:
        raise NotImplementedError

    def _gone(self, exc: InstrumentGone) -> None:
        raise NotImplementedError

    def _pushed(self, inst_id: str) -> bool:
        """Whether open interest of `inst_id` streams (a push in the last `STALE_OI_MS`, and the
        subscription not refused since)."""
        seen = self.pushes.get(inst_id)
        if not seen or self.mode == "poll" or self.refused.active(OI_CHANNEL, inst_id):
            return False
        return self.now() - seen[-1].ts < STALE_OI_MS

    async def _oi_from_pushes(self, tf: Timeframe, close: int) -> None:
        """At `close` + OI_SETTLE_MS: the newest pushed value with `ts <= close`, per streamed
        perpetual."""
        for perp in self.oi_perps:
            if perp.inst_id in self.gone or not self._pushed(perp.inst_id):
                continue
            before = [p for p in self.pushes[perp.inst_id] if p.ts <= close]
            if before:
                await self._write_oi(perp.inst_id, tf, before[-1]._replace(ts=close))

    async def _oi_from_rest(self, tf: Timeframe, close: int, stop: asyncio.Event) -> None:
        """Right after `close`: OKX's current value for each perpetual not streaming, kept if
        OKX made it within the 3 s step that starts at `close` (the value in force then); ends
        at `stop`, as `_poll`."""
        for perp in list(self.oi_perps):
            if stop.is_set():
                return
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
            self.refused.polled(OI_CHANNEL, perp.inst_id)
            if close <= answer.ts < close + OI_STEP_MS:
                await self._write_oi(perp.inst_id, tf, answer._replace(ts=close))

    async def _write_oi(self, inst_id: str, tf: Timeframe, row: OpenInterest) -> None:
        await self.writer.put(Item("open_interest", inst_id, tf, [row]))
        self._count("oi", 1, row.source)
