"""What a websocket connection pushes, and when (no I/O: the connection sends the frames).

- In-progress candles (confirm "0") are re-pushed every `push_interval` real seconds on average,
  each subscription on its own jittered schedule (+/- 20 %), so different series arrive at
  different moments as on OKX (ccxt's `watch_ohlcv_for_symbols` returns one series per burst).
- When a candle closes by simulated time, its final values (confirm "1") are pushed, then the new
  candle in progress; all series closing together are pushed together, in random order. The
  confirm frames are built ahead (at an in-progress push of the candle: its final values are known
  from its start), so that a close costs the connection a heap pop per series: `confirms` hands
  them over first, `due` then moves the series to their next candle.
- Mark-price and index candles (`derived_pushes.PriceCandleSub`) are pushed exactly as trade
  candles; open interest (`OpenInterestSub`) on subscribe, then at each 3 s step of simulated time
  at which it changed (at most once per push interval of real time).
- Funding rates are pushed on subscribe, then every 30-90 simulated seconds (at most once per
  push interval of real time).
- Nothing is pushed for a quiet or delisted instrument (its schedule runs on, silently), nor a
  candle opening before the instrument's listTime (REST serves none either).

Three heaps (in-progress due times, candle close times, funding due times) make each wake-up cost
proportional to the frames it sends, not to the number of subscriptions.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import random
from collections.abc import Sequence
from typing import cast

from okx_collector.simulator.bars import Bar
from okx_collector.simulator.clock import SimClock
from okx_collector.simulator.derived import OI_STEP_MS, PriceLive, price_lives
from okx_collector.simulator.derived_pushes import OpenInterestSub, PriceCandleSub
from okx_collector.simulator.emptyfields import blank_field
from okx_collector.simulator.faults import Faults
from okx_collector.simulator.funding import FundingModel
from okx_collector.simulator.instruments import Instrument
from okx_collector.simulator.live import LiveCandle, RawOHLCV
from okx_collector.simulator.market import Market, okx_candle

Live = LiveCandle | PriceLive

FUNDING_PUSH_MS = (30_000, 90_000)  # simulated ms between funding-rate pushes
MAX_CLOSES_PER_SERIES = 10  # at extreme speeds older closes are skipped; clients backfill them
JITTER = 0.2  # in-progress push intervals vary by +/- this share
SLACK_S = 0.002  # pushes due this soon are sent in the current wake-up


class CandleSub:
    """A `candle<bar>` subscription."""

    __slots__ = ("active", "bar", "final", "first_open", "inst", "live", "prefix")

    def __init__(self, inst: Instrument, bar: Bar, arg: str) -> None:
        self.inst, self.bar = inst, bar
        self.prefix = f'{{"arg":{arg},"data":[["'  # frame text up to the row
        self.live: LiveCandle | None = None  # the candle in progress (None until first push)
        self.active = True  # False once unsubscribed: dropped from the heaps lazily
        self.first_open = bar.ceil(inst.list_time)  # no candle before this one exists
        self.final: Final | None = None  # the confirm frame of `live`, built ahead

    def frame(self, ts: int, raw: RawOHLCV, confirm: str, blank: float = 0.0, seed: int = 0) -> str:
        row = okx_candle(self.inst, ts, raw, confirm)
        if blank > 0:
            row = blank_field(row, seed, self.inst.inst_id, self.bar.name, blank)
        return self.prefix + '","'.join(row) + '"]]}'


class FundingSub:
    """A `funding-rate` subscription."""

    __slots__ = ("active", "due_ms", "last_real", "model", "prefix")

    def __init__(self, model: FundingModel, arg: str) -> None:
        self.model = model
        self.prefix = f'{{"arg":{arg},"data":['
        self.due_ms = 0  # simulated time of the next push
        self.last_real = -math.inf  # monotonic() of the last push
        self.active = True

    def frame(self, now_ms: int, processing_ms: int = 0) -> str:
        row = json.dumps(self.model.current_row(now_ms, processing_ms), separators=(",", ":"))
        return self.prefix + row + "]}"


Sub = CandleSub | FundingSub | PriceCandleSub | OpenInterestSub
AnyCandleSub = CandleSub | PriceCandleSub
# (open time, empty-field share it was built with, confirm frame or None before listTime)
Final = tuple[int, float, str | None]


class PushScheduler:
    """The push schedule of one connection."""

    def __init__(
        self,
        market: Market,
        clock: SimClock,
        push_interval: float,
        rng: random.Random,
        faults: Faults | None = None,
    ) -> None:
        self.market, self.clock, self.interval, self.rng = market, clock, push_interval, rng
        self.faults = faults or Faults()
        self._seq = itertools.count()  # heap tie-breaker
        self._progress: list[tuple[float, int, AnyCandleSub]] = []  # (real due time, _, sub)
        self._closes: list[tuple[int, int, AnyCandleSub]] = []  # (simulated close time, _, sub)
        self._funding: list[tuple[int, int, FundingSub]] = []  # (simulated due time, _, sub)
        self._oi: list[tuple[int, int, OpenInterestSub]] = []  # (simulated due time, _, sub)
        # Closed by `confirms` (their confirm frame sent or not, in push order), rolled by `due`.
        self._rolling: list[tuple[AnyCandleSub, bool]] = []

    def add(self, subs: Sequence[Sub], now_real: float, now_ms: int) -> list[str]:
        """Schedule new subscriptions; return their first frames (sent right away)."""
        candles = [s for s in subs if isinstance(s, CandleSub | PriceCandleSub)]
        frames = self._roll(candles, now_ms)
        for sub in candles:
            first = now_real + self.interval * self.rng.uniform(0.5, 1.0)
            heapq.heappush(self._progress, (first, next(self._seq), sub))
        for fsub in subs:
            if isinstance(fsub, FundingSub):
                self._funding_push(fsub, now_real, now_ms, frames)
            elif isinstance(fsub, OpenInterestSub):
                self._oi_push(fsub, now_real, now_ms, frames)
        return frames

    def confirms(self, now_ms: int) -> list[str]:
        """The confirm frames of the candles closed by `now_ms`, in random order: what clients
        wait for, so a connection sends them before anything else of a wake-up. (Only a series
        whose last candle closed: after a longer gap, its closes are all sent by `due`, in
        order.) `due` moves these series on to their next candle."""
        closed: list[AnyCandleSub] = []
        while self._closes and self._closes[0][0] <= now_ms:
            sub = heapq.heappop(self._closes)[2]
            if sub.active:
                closed.append(sub)
        self.rng.shuffle(closed)
        frames: list[str] = []
        for sub in closed:
            live = sub.live
            sent = live is not None and now_ms < live.close_ts + sub.bar.ms
            if live is not None and sent:
                frame = self._final_frame(sub, live)
                if frame is not None and not self._silent(_silent_id(sub)):
                    frames.append(frame)
            self._rolling.append((sub, sent))
        return frames

    def due(self, now_real: float, now_ms: int) -> list[str]:
        """The frames due now (closes first, then in-progress candles, then funding)."""
        frames = self.confirms(now_ms)
        rolling, self._rolling = self._rolling, []
        confirmed = {id(s) for s, sent in rolling if sent}
        frames += self._roll([s for s, _ in rolling], now_ms, confirmed)
        just_pushed = {id(s) for s, _ in rolling}
        horizon = now_real + SLACK_S
        while self._progress and self._progress[0][0] <= horizon:
            due, _, sub = heapq.heappop(self._progress)
            if not sub.active:
                continue
            live = sub.live
            if id(sub) not in just_pushed and live is not None:
                self._candle(sub, live.open_ts, live.at(now_ms), "0", frames)
                self._final_frame(sub, live)  # built now, spread over the candle, not at its close
            step = self.interval * self.rng.uniform(1 - JITTER, 1 + JITTER)
            heapq.heappush(self._progress, (max(due + step, now_real), next(self._seq), sub))
        while self._funding and self._funding[0][0] <= now_ms:
            fsub = heapq.heappop(self._funding)[2]
            if not fsub.active:
                continue
            if now_real - fsub.last_real >= self.interval:
                self._funding_push(fsub, now_real, now_ms, frames)
            else:  # pushed less than a push interval ago (high speed): retry then
                wait_ms = (fsub.last_real + self.interval - now_real) * self.clock.speed * 1000
                fsub.due_ms = now_ms + max(1, math.ceil(wait_ms))
                heapq.heappush(self._funding, (fsub.due_ms, next(self._seq), fsub))
        while self._oi and self._oi[0][0] <= now_ms:
            osub = heapq.heappop(self._oi)[2]
            if osub.active:
                self._oi_push(osub, now_real, now_ms, frames)
        return frames

    def next_wake(self) -> float:
        """The monotonic() time at which something is next due (inf if nothing is)."""
        wake = math.inf
        if self._progress:
            wake = self._progress[0][0]
        if self._closes:
            wake = min(wake, self.clock.real_at(self._closes[0][0]))
        if self._funding:
            wake = min(wake, self.clock.real_at(self._funding[0][0]))
        if self._oi:
            wake = min(wake, self.clock.real_at(self._oi[0][0]))
        return wake

    def _roll(
        self, subs: Sequence[AnyCandleSub], now_ms: int, confirmed: set[int] | None = None
    ) -> list[str]:
        """Move these series to the candle in progress at now_ms: frames for the candles that
        closed since (confirm "1"; the last one's left out for the series in `confirmed`, whose
        `confirms` sent it), then the new in-progress one."""
        trade = [
            (s.inst.inst_id, s.bar, s.bar.floor(now_ms)) for s in subs if isinstance(s, CandleSub)
        ]
        fresh = iter(self.market.live(trade))  # one vectorised batch for the trade candles
        prices = [
            (s.model, s.bar, s.bar.floor(now_ms)) for s in subs if isinstance(s, PriceCandleSub)
        ]
        fresh_prices = iter(price_lives(prices))  # and one per kind for mark and index candles
        frames: list[str] = []
        for sub in subs:
            live: Live
            if isinstance(sub, CandleSub):
                live = trade_live = next(fresh)
                if sub.live is not None:
                    self._closed_frames(sub, sub.live, live.open_ts, frames, confirmed)
                sub.live = trade_live
            else:
                live = price_live = next(fresh_prices)
                if sub.live is not None:
                    self._closed_frames(sub, sub.live, live.open_ts, frames, confirmed)
                sub.live = price_live
            self._candle(sub, live.open_ts, live.at(now_ms), "0", frames)
            heapq.heappush(self._closes, (live.close_ts, next(self._seq), sub))
        return frames

    def _closed_frames(
        self,
        sub: AnyCandleSub,
        last: Live,
        current: int,
        frames: list[str],
        confirmed: set[int] | None,
    ) -> None:
        bar = sub.bar
        first = max(last.open_ts, current - MAX_CLOSES_PER_SERIES * bar.ms)
        for open_ts in range(first, current, bar.ms):
            raw: tuple[int, ...]
            if open_ts == last.open_ts:
                if confirmed is not None and id(sub) in confirmed:
                    continue
                raw = last.final()
            elif isinstance(sub, CandleSub):
                raw = self.market.closed_raw(sub.inst.inst_id, bar, open_ts, 1)[0][1:]
            else:
                raw = sub.model.closed_raw(bar, open_ts, 1)[0][1:]
            self._candle(sub, open_ts, raw, "1", frames)

    def _silent(self, inst_id: str) -> bool:
        """Quiet or delisted: OKX pushes nothing (OKX.md §7), the schedule runs on unseen."""
        return inst_id in self.market.quiet or inst_id in self.market.delisted

    def _candle(
        self, sub: AnyCandleSub, ts: int, raw: tuple[int, ...], confirm: str, frames: list[str]
    ) -> None:
        if self._silent(_silent_id(sub)):
            return
        frame = self._frame(sub, ts, raw, confirm)
        if frame is not None:
            frames.append(frame)

    def _frame(self, sub: AnyCandleSub, ts: int, raw: tuple[int, ...], confirm: str) -> str | None:
        """The push of one candle row (None before the instrument's first candle)."""
        if ts < sub.first_open:
            return None
        if isinstance(sub, PriceCandleSub):
            return sub.frame(ts, raw, confirm)
        share = self.faults.empty_field_share
        return sub.frame(ts, cast(RawOHLCV, raw), confirm, share, self.market.seed)

    def _final_frame(self, sub: AnyCandleSub, live: Live) -> str | None:
        """The confirm frame of `live` (cached on the sub: its final values never change)."""
        share = self.faults.empty_field_share
        final = sub.final
        if final is None or final[0] != live.open_ts or final[1] != share:
            frame = self._frame(sub, live.open_ts, live.final(), "1")
            final = sub.final = (live.open_ts, share, frame)
        return final[2]

    def _funding_push(
        self, sub: FundingSub, now_real: float, now_ms: int, frames: list[str]
    ) -> None:
        sub.last_real = now_real
        sub.due_ms = now_ms + self.rng.randint(*FUNDING_PUSH_MS)
        heapq.heappush(self._funding, (sub.due_ms, next(self._seq), sub))
        if not self._silent(sub.model.inst.inst_id):
            processing = round(self.faults.settle_processing_s * 1000)
            frames.append(sub.frame(now_ms, processing))

    def _oi_push(
        self, sub: OpenInterestSub, now_real: float, now_ms: int, frames: list[str]
    ) -> None:
        """Push open interest if it changed (and a push interval of real time has passed since
        the last push); check again at the next 3 s step."""
        step_ms = OI_STEP_MS
        if now_real - sub.last_real >= self.interval:
            if self._silent(sub.model.inst.inst_id):
                sub.checked = None  # back from silence: the value then, as on a subscribe
            elif changes := sub.frames(now_ms):  # every change since the last check
                sub.last_real = now_real
                frames.extend(changes)
            sub.due_ms = (now_ms // step_ms + 1) * step_ms
        else:  # pushed less than a push interval ago (high speed): check again then
            wait_ms = (sub.last_real + self.interval - now_real) * self.clock.speed * 1000
            sub.due_ms = now_ms + max(1, math.ceil(wait_ms))
        heapq.heappush(self._oi, (sub.due_ms, next(self._seq), sub))


def _silent_id(sub: AnyCandleSub) -> str:
    """The instId whose quiet or delisted state silences this subscription."""
    return sub.silent_id if isinstance(sub, PriceCandleSub) else sub.inst.inst_id
