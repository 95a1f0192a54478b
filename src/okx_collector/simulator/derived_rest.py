"""OKX v5 REST routes for mark-price candles, index candles and open interest (docs/simulator.md).

They share `RestApi`'s middleware (maintenance, injected 5xx/429, latency, OKX error bodies), its
instrument checks (unknown or delisted ids: 51001) and its rate limiter, each route under its own
rule at OKX's documented limit (ratelimit.LIMITS). Rows come newest first; `before`/`after`
(`begin`/`end` for the rubik history) are exclusive bounds and `before` alone returns the latest.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from okx_collector.simulator.bars import BARS, Bar
from okx_collector.simulator.derived import PriceModel
from okx_collector.simulator.derived_market import DerivedMarket
from okx_collector.simulator.rest import (
    PREFIX,
    RECENT_BARS,
    OkxError,
    RestApi,
    _int,
    _limit,
    capped,
    ok,
    window,
)

PRICE_CANDLE_LIMIT = (100, 100)  # (default, max) rows: mark and index candles, both endpoints
OI_HISTORY_LIMIT = (100, 100)
OI_HISTORY_ENTRIES = 1440  # rubik: "the latest 1,440 data entries"
# Rubik periods the simulator serves: OKX's list minus 2D/3D/5D/1M/3M (not simulated).
OI_PERIODS = frozenset(b for b in BARS if b not in ("1m", "3m"))
_THREAD_MINUTES = 50_000  # pages needing more 1m candles than this are computed off the loop


class DerivedRest:
    """The routes, over the `RestApi` they extend and the derived models."""

    def __init__(self, api: RestApi, derived: DerivedMarket) -> None:
        self.api, self.derived = api, derived

    def routes(self) -> list[web.RouteDef]:
        p = PREFIX
        return [
            web.get(p + "market/mark-price-candles", self.mark_candles),
            web.get(p + "market/history-mark-price-candles", self.history_mark_candles),
            web.get(p + "market/index-candles", self.index_candles),
            web.get(p + "market/history-index-candles", self.history_index_candles),
            web.get(p + "public/open-interest", self.open_interest),
            web.get(p + "rubik/stat/contracts/open-interest-history", self.open_interest_history),
        ]

    # -- candles -------------------------------------------------------------------------------

    async def mark_candles(self, request: web.Request) -> web.Response:
        return await self._mark(request, history=False)

    async def history_mark_candles(self, request: web.Request) -> web.Response:
        return await self._mark(request, history=True)

    async def index_candles(self, request: web.Request) -> web.Response:
        return await self._index(request, history=False)

    async def history_index_candles(self, request: web.Request) -> web.Response:
        return await self._index(request, history=True)

    async def _mark(self, request: web.Request, history: bool) -> web.Response:
        self.api._rate(request, "history-mark-price-candles" if history else "mark-price-candles")
        inst = self.api._inst(request.query, swap=True)
        return await self._price(request, self.derived.mark(inst.inst_id), history)

    async def _index(self, request: web.Request, history: bool) -> web.Response:
        self.api._rate(request, "history-index-candles" if history else "index-candles")
        index_id = request.query.get("instId", "")
        if not index_id:
            raise OkxError("50014", "Parameter instId can not be empty", 400)
        if not self.derived.index_instruments(index_id):  # unknown, or everything behind delisted
            raise OkxError("51001", f"Instrument ID {index_id} doesn't exist.")
        return await self._price(request, self.derived.index(index_id), history)

    async def _price(self, request: web.Request, model: PriceModel, history: bool) -> web.Response:
        q = request.query
        bar = BARS.get(q.get("bar", "") or "1m")
        if bar is None:
            raise OkxError("51000", "Parameter bar error", 400)
        faults = self.api.faults
        cap = faults.cap_history_price_candles if history else faults.cap_price_candles
        limit = capped(_limit(q, PRICE_CANDLE_LIMIT), cap)
        after, before = _int(q, "after"), _int(q, "before")
        now = self.api.clock.now_ms()
        current = bar.floor(now)
        oldest = self.derived.first_open(model, bar)
        if not history:  # the recent endpoints keep the latest 1,440 rows, as for trade candles
            oldest = max(oldest, current - (RECENT_BARS - 1) * bar.ms)
        lo, hi = window(oldest, current, bar.ms, after, before, limit, bar.floor)
        if lo > hi or current < oldest:
            return ok([])
        rows: list[list[str]] = []
        if hi == current:  # the candle in progress, confirm "0"
            rows.append(model.row(current, model.live(bar, current).at(now), "0"))
            hi -= bar.ms
        rows.extend(await self._closed_rows(model, bar, lo, hi))
        return ok(rows)

    @staticmethod
    async def _closed_rows(model: PriceModel, bar: Bar, lo: int, hi: int) -> list[list[str]]:
        count = (hi - lo) // bar.ms + 1 if hi >= lo else 0
        if count * bar.minutes > _THREAD_MINUTES:
            raw = await asyncio.to_thread(model.closed_raw, bar, lo, count)
        else:
            raw = model.closed_raw(bar, lo, count)
        return [model.row(r[0], r[1:], "1") for r in reversed(raw)]

    # -- open interest -------------------------------------------------------------------------

    async def open_interest(self, request: web.Request) -> web.Response:
        q = request.query
        self.api._rate(request, "open-interest", q.get("instId", ""))
        inst_type = q.get("instType", "")
        if not inst_type:
            raise OkxError("50014", "Parameter instType can not be empty", 400)
        if inst_type not in ("SWAP", "FUTURES", "OPTION"):
            raise OkxError("51000", "Parameter instType error", 400)
        if inst_type != "SWAP":  # none simulated; OKX answers code 0 for an empty type
            return ok([])
        now = self.api.clock.now_ms()
        family = q.get("instFamily", "") or q.get("uly", "")
        if q.get("instId", ""):
            ids = [self.api._inst(q, swap=True).inst_id]
        else:
            ids = list(self.api.market.swap_ids())
        rows = []
        for inst_id in ids:
            if family and self.derived.index_of(self.api.market.instrument(inst_id)) != family:
                continue
            rows.append(self.derived.open_interest(inst_id).row(now, update_ts=False))
        return ok(rows)

    async def open_interest_history(self, request: web.Request) -> web.Response:
        q = request.query
        self.api._rate(request, "open-interest-history", q.get("instId", ""))
        inst = self.api._inst(q, swap=True)
        period = q.get("period", "") or "5m"
        if period not in OI_PERIODS:
            raise OkxError("51000", "Parameter period error", 400)
        bar = BARS[period]
        limit = capped(_limit(q, OI_HISTORY_LIMIT), self.api.faults.cap_open_interest_history)
        end, begin = _int(q, "end"), _int(q, "begin")
        now = self.api.clock.now_ms()
        current = bar.floor(now)  # its entry exists: the value at its opening instant
        oldest = max(bar.ceil(inst.list_time), current - (OI_HISTORY_ENTRIES - 1) * bar.ms)
        lo, hi = window(oldest, current, bar.ms, end, begin, limit, bar.floor)
        if lo > hi:
            return ok([])
        times = list(range(hi, lo - 1, -bar.ms))
        return ok(self.derived.open_interest(inst.inst_id).history_rows(times))
