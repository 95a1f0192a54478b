"""Open interest at each bar close of the live derived series (`live.derived`).

The row stored at a close `C` of a collected timeframe is the value in force at `C`:

- a streamed perpetual: the newest pushed value with `ts <= C` (OKX pushes a change at each 3 s
  step), taken `OI_SETTLE_MS` after `C` in exchange time and `OI_SETTLE_REAL_S` after the loop saw
  that in local time (a push's latency is real time);
- a perpetual not streamed (`--mode poll`, a refused or silent subscription): OKX's current value
  (`public/open-interest`), asked right after `C` and kept if OKX made it within the 3 s step that
  starts at `C` (no later change can be in it).

No close is skipped when the loop comes late (a loaded machine, a slow round of requests): per
timeframe it keeps the newest close asked over REST and the newest one settled, and handles every
close since, oldest first:

- streamed: each from the pushes, which are kept for `OI_CATCHUP_MS` (only those that answer a
  close: a push followed by another before the next close of any timeframe is dropped);
- not streamed: OKX's current value tells only the newest close (if it is still within its 3 s
  step). The others are asked from OKX's rubik history, one request per perpetual, at the
  timeframes OKX keeps one for (5m and longer: `exchange_derived.OI_PERIODS`; its entry at `C`
  is the value in force at `C`, as the backfill stores it); at 1m and 3m, and where the history
  does not have them yet, they are gaps.

A catch-up reaches back `OI_CATCHUP_MS`: older closes are gaps, so that a loop hours late neither
queues hours of work nor keeps hours of pushes. Every gap is listed by `status` (open interest is
due at every close); the loop logs, per catch-up, how many closes it left as gaps and why, and
`backfill --series oi` fills those of 5m and longer from the history later.

A mixin of `DerivedLive`, kept apart because it is one job; the attributes are `DerivedLive`'s.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from okx_collector.errors import ExchangeRejected, ExchangeUnavailable, InstrumentGone
from okx_collector.exchange_derived import OI_CHANNEL, OI_PERIODS
from okx_collector.instruments import Instrument
from okx_collector.live.derived_base import DerivedParts
from okx_collector.live.derived_parts import work_through
from okx_collector.live.writer import Item
from okx_collector.localclock import LocalClock
from okx_collector.models import OpenInterest
from okx_collector.timeframes import Timeframe

log = logging.getLogger("okx_collector.collect")

OI_STEP_MS = 3_000  # OKX updates open interest on a 3 s grid
STALE_OI_MS = 60_000  # no open-interest push for this long: ask REST at each close
# A close's push has arrived this long after it (OKX pushes each 3 s step's change; the margin
# covers a push's latency and a feed that batches several steps).
OI_SETTLE_MS = 10_000
# ... and at least this long on the local clock (real time in a run): a push's latency is real
# time (against a fast simulator 10 exchange seconds pass in 83 ms, which a loaded machine's stall
# can exceed).
OI_SETTLE_REAL_S = 0.5
# How far back a late loop catches up closes, and so how long pushes are kept: an hour is 60
# closes of 1m (one push each, at most, once the pushes between closes are dropped).
OI_CATCHUP_MS = 3_600_000
# Pushes kept: the catch-up's reach, and a margin for the closes it queued to settle meanwhile.
OI_PUSHES_SPAN_MS = OI_CATCHUP_MS + 300_000
OI_PUSHES_KEPT = 512  # per perpetual, a bound whatever the timeframes (1m: ~66 are kept)
# Perpetuals asked at once after a close: the value must come within the close's 3 s step, and
# OKX limits this endpoint per instrument (there is no shared pace to wait for).
OI_REST_WORKERS = 16

Closes = list[tuple[Timeframe, list[int]]]  # per timeframe: closes to take, oldest first


def _ts(row: OpenInterest) -> int:
    return row.ts


def closes_since(tf: Timeframe, after: int, newest: int, now: int) -> tuple[list[int], int]:
    """The closes of `tf` in (after, newest], oldest first, within OI_CATCHUP_MS of `now`; and
    how many older ones the catch-up leaves out."""
    first = after + tf.ms
    reach = max(first, tf.ceil(now - OI_CATCHUP_MS))
    lost = range(first, min(reach, newest + tf.ms), tf.ms)
    return list(range(reach, newest + 1, tf.ms)), len(lost)


class Lost:
    """Closes a look of the loop leaves as gaps, per timeframe: logged once."""

    def __init__(self) -> None:
        self.closes: dict[str, tuple[int, int]] = {}  # tf -> (first close, closes)

    def add(self, tf: Timeframe, first: int, count: int) -> None:
        if count:
            before, counted = self.closes.get(tf.name, (first, 0))
            self.closes[tf.name] = (min(before, first), counted + count)

    def log(self) -> None:
        for name, (first, count) in self.closes.items():
            log.warning(
                "open interest %s: %d closes from %s are gaps: the loop was more than %d min "
                "late, and a catch-up reaches back no further (status lists them; `backfill "
                "--series oi` fills those of 5m and longer from OKX's history)",
                name, count, _iso(first), OI_CATCHUP_MS // 60_000,
            )  # fmt: skip


class OpenInterestCloses(DerivedParts):
    """The derived series' open interest at bar closes; the attributes are `DerivedLive`'s."""

    now: Callable[[], int]
    local: LocalClock
    timeframes: list[Timeframe]
    oi_perps: list[Instrument]
    pushes: dict[str, list[OpenInterest]]

    # -- the pushes ------------------------------------------------------------------------------

    def _on_oi(self, inst_id: str, oi: OpenInterest) -> None:
        """Keep a push: those that answer a close (the newest at or before it), in time order,
        for OI_PUSHES_SPAN_MS."""
        seen = self.pushes.setdefault(inst_id, [])
        if seen and oi.ts < seen[-1].ts:
            bisect.insort(seen, oi, key=_ts)  # (OKX pushes in order: kept right all the same)
        elif seen and not any(tf.ceil(seen[-1].ts) < oi.ts for tf in self.timeframes):
            seen[-1] = oi  # no close between the two: the one before answers none
        else:
            seen.append(oi)
        # The newest push at or before the span's start answers the closes after it: kept.
        older = bisect.bisect_right(seen, oi.ts - OI_PUSHES_SPAN_MS, key=_ts) - 1
        if older > 0:
            del seen[:older]
        del seen[:-OI_PUSHES_KEPT]

    def _pushed(self, inst_id: str) -> bool:
        """Whether open interest of `inst_id` streams (a push in the last `STALE_OI_MS`, and the
        subscription not refused since)."""
        seen = self.pushes.get(inst_id)
        if not seen or self.mode == "poll" or self.refused.active(OI_CHANNEL, inst_id):
            return False
        return self.now() - seen[-1].ts < STALE_OI_MS

    # -- the closes ------------------------------------------------------------------------------

    def _oi_begin(self, now: int) -> None:
        """The closes up to `now` are the start-up catch-up's (the rubik history)."""
        self._oi_asked = {tf.name: tf.floor(now) for tf in self.timeframes}  # asked over REST
        self._oi_settled = {tf.name: tf.floor(now - OI_SETTLE_MS) for tf in self.timeframes}
        self._oi_settling: deque[tuple[float, Timeframe, int]] = deque()  # (local due, tf, close)

    async def _oi_closes(self, stop: asyncio.Event) -> None:
        """One look of the loop: every close it has not handled yet, however many bars it was
        late, in order (up to OI_CATCHUP_MS back: the older ones are logged as gaps)."""
        now = self.now()
        lost = Lost()
        asked = self._new_closes(now, lost)
        if asked and self.oi_perps:
            await self._oi_from_rest(asked, stop)
        while self._oi_settling and self._oi_settling[0][0] <= self.local.monotonic():
            _, tf, close = self._oi_settling.popleft()
            if self.oi_perps:
                await self._oi_from_pushes(tf, close)
        if self.oi_perps:
            lost.log()

    def _new_closes(self, now: int, lost: Lost) -> Closes:
        """The closes to ask over REST at `now` (the value now tells the newest), and those to
        take from the pushes queued (due OI_SETTLE_REAL_S from now); those out of the catch-up's
        reach, queued ones included, go to `lost`."""
        horizon = now - OI_PUSHES_SPAN_MS  # queued closes stay answerable until then
        if any(close < horizon for _, _, close in self._oi_settling):
            for _, tf, close in self._oi_settling:  # their pushes are no longer kept
                if close < horizon:
                    lost.add(tf, close, 1)
            self._oi_settling = deque(e for e in self._oi_settling if e[2] >= horizon)
        asked: Closes = []
        for tf in self.timeframes:
            newest = tf.floor(now)
            if newest > self._oi_asked[tf.name]:
                closes, _ = closes_since(tf, self._oi_asked[tf.name], newest, now)
                self._oi_asked[tf.name] = newest
                if closes:
                    asked.append((tf, closes))
            newest, settled = tf.floor(now - OI_SETTLE_MS), self._oi_settled[tf.name]
            if newest > settled:
                closes, out = closes_since(tf, settled, newest, now)
                self._oi_settled[tf.name] = newest
                lost.add(tf, settled + tf.ms, out)
                if len(closes) > 1 and self.oi_perps:
                    log.info("open interest %s: the loop was late: %d closes", tf.name, len(closes))
                due = self.local.monotonic() + OI_SETTLE_REAL_S
                self._oi_settling.extend((due, tf, close) for close in closes)
        return asked

    async def _oi_from_pushes(self, tf: Timeframe, close: int) -> None:
        """At `close` + OI_SETTLE_MS: the newest pushed value with `ts <= close`, per streamed
        perpetual."""
        for perp in self.oi_perps:
            if perp.inst_id in self.gone or not self._pushed(perp.inst_id):
                continue
            seen = self.pushes[perp.inst_id]
            at = bisect.bisect_right(seen, close, key=_ts)
            if at:
                await self._write_oi(perp.inst_id, tf, [seen[at - 1]._replace(ts=close)])

    async def _oi_from_rest(self, asked: Closes, stop: asyncio.Event) -> None:
        """Right after the closes: OKX's current value for each perpetual not streaming,
        OI_REST_WORKERS at a time (the value must be asked within the close's 3 s step); ends
        at `stop`, as the poll round. Closes it cannot tell (a late loop's) are asked from the
        rubik history; the ones left are logged as gaps."""
        perps = [
            p for p in self.oi_perps if p.inst_id not in self.gone and not self._pushed(p.inst_id)
        ]
        gaps = {tf.name: 0 for tf, _ in asked}

        async def ask(perp: Instrument) -> None:
            for tf, left in await self._oi_rest_one(perp, asked):
                gaps[tf.name] += left

        await work_through([(perps, OI_REST_WORKERS)], ask, stop)
        for tf, closes in asked:
            if gaps[tf.name] and len(closes) > 1:
                why = (
                    "and the history OKX keeps did not have them yet"
                    if tf.name in OI_PERIODS
                    else f"and OKX keeps no {tf.name} history"
                )
                log.warning(
                    "open interest %s: the loop was %d closes late (since %s); %d closes of "
                    "perpetuals polled over REST are gaps: OKX's current value tells only the "
                    "newest close, %s (status lists them)",
                    tf.name, len(closes), _iso(closes[0]), gaps[tf.name], why,
                )  # fmt: skip

    async def _oi_rest_one(self, perp: Instrument, asked: Closes) -> list[tuple[Timeframe, int]]:
        """One perpetual's value at each timeframe's newest close, and its other closes from the
        history; the closes left as gaps per timeframe (a late loop's only)."""
        try:
            answer = await self.derived.fetch_open_interest(perp)
        except InstrumentGone as exc:
            self._gone(exc)
            return []
        except (ExchangeUnavailable, ExchangeRejected) as exc:
            log.debug("open interest poll of %s failed: %s", perp.inst_id, exc)
            return []
        self.refused.polled(OI_CHANNEL, perp.inst_id)
        left: list[tuple[Timeframe, int]] = []
        for tf, closes in asked:
            newest, untold = closes[-1], closes
            if newest <= answer.ts < newest + OI_STEP_MS:
                await self._write_oi(perp.inst_id, tf, [answer._replace(ts=newest)])
                untold = closes[:-1]
            if len(closes) > 1 and untold:  # a late loop: the history has the others
                left.append((tf, len(untold) - await self._oi_from_history(perp, tf, untold)))
        return left

    async def _oi_from_history(self, perp: Instrument, tf: Timeframe, closes: list[int]) -> int:
        """The rubik entries at `closes` (the value in force at each), stored; how many."""
        if tf.name not in OI_PERIODS:
            return 0
        try:
            rows = await self.derived.fetch_open_interest_history(
                perp, tf, closes[0], closes[-1] + 1
            )
        except InstrumentGone as exc:
            self._gone(exc)
            return 0
        except (ExchangeUnavailable, ExchangeRejected) as exc:
            log.debug("open interest history of %s failed: %s", perp.inst_id, exc)
            return 0
        wanted = set(closes)
        found = [r for r in rows if r.ts in wanted]
        if found:
            await self._write_oi(perp.inst_id, tf, found)
        return len(found)

    async def _write_oi(self, inst_id: str, tf: Timeframe, rows: Sequence[OpenInterest]) -> None:
        await self.writer.put(Item("open_interest", inst_id, tf, list(rows)))
        self._count("oi", len(rows), rows[0].source)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
