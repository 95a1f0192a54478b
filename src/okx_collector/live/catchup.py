"""The collector's supervisor: each tick, a series switches between streaming and polling, and a
REST catch-up fetches whatever closed that is not stored (polls, gaps, reconnects, refusals).

A mixin of `Collector`, kept apart because it is one job; the attributes it uses are the
collector's, declared in live/parts.py.
"""

from __future__ import annotations

import asyncio
import logging

from okx_collector.backfill.planner import PAGE_BARS, recent_from
from okx_collector.errors import ExchangeRejected, ExchangeUnavailable, InstrumentGone
from okx_collector.live.parts import CollectorParts
from okx_collector.live.series import (
    SeriesState,
    catch_up_wanted,
    poll_round_due,
    retry_hold_seconds,
)
from okx_collector.live.writer import Item
from okx_collector.models import Source, closed_candles
from okx_collector.retry import with_retries

log = logging.getLogger("okx_collector.collect")

TICK_SECONDS = 0.25  # supervisor cadence (local time)
GONE_HOLD_SECONDS = 60.0  # REST said 51001 but the list still has it: no catch-up for a while


class CatchUps(CollectorParts):
    """The collector's supervisor and REST catch-ups."""

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
            clock=self.local,
        )
        candles = closed_candles(rows)
        if candles:
            await self.writer.put(Item("candles", state.inst.inst_id, state.tf, candles))
            state.stored(candles[-1].ts)
