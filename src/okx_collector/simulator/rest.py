"""OKX v5 REST routes: instruments, candles, funding, tickers, trades, time.

Every answer is OKX's envelope `{"code":"0","msg":"","data":[...]}` with string numbers; errors
are OKX JSON too (ccxt maps the code, OKX.md §1.1). Rows come newest first; `before`/`after` are
exclusive bounds and `before` alone returns the latest rows.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from okx_collector.simulator.bars import BARS, Bar
from okx_collector.simulator.clock import SimClock
from okx_collector.simulator.emptyfields import blank_field
from okx_collector.simulator.faults import Faults
from okx_collector.simulator.funding import FUNDING_HISTORY_MS
from okx_collector.simulator.instruments import Instrument
from okx_collector.simulator.maintenance import MAINTENANCE_CODE, MAINTENANCE_MSG, Maintenance
from okx_collector.simulator.market import Market, okx_candle
from okx_collector.simulator.ratelimit import RateLimiter
from okx_collector.simulator.stats import Stats
from okx_collector.simulator.tape import Tape

PREFIX = "/api/v5/"
RECENT_BARS = 1440  # /market/candles only serves the latest 1,440 bars
CANDLE_LIMIT = (100, 300)  # (default, max) rows
FUNDING_LIMIT = (400, 400)
TRADES_LIMIT = (100, 500)
# Pages needing more 1m bars than this are computed off the event loop.
_THREAD_MINUTES = 50_000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class OkxError(Exception):
    """An OKX error answer: its code, message and HTTP status."""

    def __init__(self, code: str, msg: str, status: int = 200) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))


def ok(data: list[Any]) -> web.Response:
    return web.Response(
        text=dumps({"code": "0", "msg": "", "data": data}), content_type="application/json"
    )


def error(code: str, msg: str, status: int) -> web.Response:
    return web.Response(
        text=dumps({"code": code, "msg": msg, "data": []}),
        status=status,
        content_type="application/json",
    )


def _int(q: Mapping[str, str], name: str) -> int | None:
    raw = q.get(name, "")
    if raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise OkxError("51000", f"Parameter {name} error", 400) from None


def _limit(q: Mapping[str, str], bounds: tuple[int, int]) -> int:
    value = _int(q, "limit")
    if value is None:
        return bounds[0]
    if value < 1:
        raise OkxError("51000", "Parameter limit error", 400)
    return min(value, bounds[1])


def capped(limit: int, cap: int) -> int:
    """`limit` under a page-cap fault (0 = no cap beyond OKX's documented maximum)."""
    return min(limit, cap) if cap > 0 else limit


def window(
    oldest: int,
    newest: int,
    step: int,
    after: int | None,
    before: int | None,
    limit: int,
    floor: Callable[[int], int],
) -> tuple[int, int]:
    """The grid times served, as (lowest, highest) inclusive: those in [oldest, newest] strictly
    between `before` and `after`, the newest `limit` of them. Empty when lowest > highest."""
    if after is not None:
        newest = min(newest, floor(after - 1))
    if before is not None:
        oldest = max(oldest, floor(before) + step)
    return max(oldest, newest - (limit - 1) * step), newest


class RestApi:
    """The REST handlers, over one market and clock."""

    def __init__(
        self,
        market: Market,
        clock: SimClock,
        limiter: RateLimiter,
        faults: Faults,
        stats: Stats,
        rng: random.Random,
        maintenance: Maintenance | None = None,
    ) -> None:
        self.market, self.clock, self.limiter = market, clock, limiter
        self.faults, self.stats, self.rng = faults, stats, rng
        self.maintenance = maintenance or Maintenance()
        self.tape = Tape(market)

    def routes(self) -> list[web.RouteDef]:
        p = PREFIX
        return [
            web.get(p + "public/instruments", self.instruments),
            web.get(p + "market/candles", self.candles),
            web.get(p + "market/history-candles", self.history_candles),
            web.get(p + "public/funding-rate", self.funding_rate),
            web.get(p + "public/funding-rate-history", self.funding_rate_history),
            web.get(p + "market/ticker", self.ticker),
            web.get(p + "market/tickers", self.tickers),
            web.get(p + "market/trades", self.trades),
            web.get(p + "public/time", self.time),
        ]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Counts, latency, injected 5xx/429, and OKX error bodies for every /api/v5 route."""
        if not request.path.startswith(PREFIX):
            return await handler(request)
        route = request.path.removeprefix(PREFIX)
        self.stats.count_route(route)
        self.stats.begin(route)
        try:
            return await self._answer(request, handler)
        finally:
            self.stats.end(route)

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.maintenance.on:  # OKX.md §7: HTTP 503, code 50001 (ccxt: OnMaintenance)
            self.stats.rest_errors += 1
            return error(MAINTENANCE_CODE, MAINTENANCE_MSG, 503)
        faults = self.faults
        if faults.rest_latency_ms > 0:
            await asyncio.sleep(faults.rest_latency_ms / 1000)
        if faults.rest_5xx_share > 0 and self.rng.random() < faults.rest_5xx_share:
            self.stats.injected_5xx += 1
            return error("50026", "System error. Try again later.", 503)
        if faults.rest_429_share > 0 and self.rng.random() < faults.rest_429_share:
            self.stats.injected_429 += 1
            return error("50011", "Too Many Requests", 429)
        try:
            return await handler(request)
        except OkxError as e:
            if e.code == "50011":
                self.stats.rate_limited += 1
            else:
                self.stats.rest_errors += 1
            return error(e.code, e.msg, e.status)

    # -- helpers -------------------------------------------------------------------------------

    def _rate(self, request: web.Request, rule: str, key: str = "") -> None:
        if not self.limiter.allow(rule, f"{request.remote}|{key}"):
            raise OkxError("50011", "Too Many Requests", 429)

    def _inst(self, q: Mapping[str, str], swap: bool = False) -> Instrument:
        inst_id = q.get("instId", "")
        if not inst_id:
            raise OkxError("50014", "Parameter instId can not be empty", 400)
        if inst_id in self.market.delisted:  # OKX.md §7: what a just-delisted id gets
            raise OkxError("51001", "Instrument ID does not exist.")
        if inst_id not in self.market:
            raise OkxError("51001", f"Instrument ID {inst_id} doesn't exist.")
        inst = self.market.instrument(inst_id)
        if swap and not inst.is_swap:
            raise OkxError("51000", "Parameter instId error", 400)
        return inst

    # -- routes --------------------------------------------------------------------------------

    async def instruments(self, request: web.Request) -> web.Response:
        q = request.query
        inst_type = q.get("instType", "")
        self._rate(request, "instruments", inst_type)
        if not inst_type:
            raise OkxError("50014", "Parameter instType can not be empty", 400)
        if inst_type not in ("SPOT", "SWAP", "FUTURES", "OPTION", "MARGIN"):
            raise OkxError("51000", "Parameter instType error", 400)
        wanted = q.get("instId", "")
        rows = [i.okx_row() for i in self.market.listed(inst_type) if wanted in ("", i.inst_id)]
        return ok(rows)

    async def candles(self, request: web.Request) -> web.Response:
        return await self._candles(request, history=False)

    async def history_candles(self, request: web.Request) -> web.Response:
        return await self._candles(request, history=True)

    async def _candles(self, request: web.Request, history: bool) -> web.Response:
        q = request.query
        self._rate(request, "history-candles" if history else "candles")
        inst = self._inst(q)
        bar = BARS.get(q.get("bar", "") or "1m")
        if bar is None:
            raise OkxError("51000", "Parameter bar error", 400)
        cap = self.faults.cap_history_candles if history else self.faults.cap_candles
        limit = capped(_limit(q, CANDLE_LIMIT), cap)  # the newest `limit` rows of the window
        after, before = _int(q, "after"), _int(q, "before")
        now = self.clock.now_ms()
        current = bar.floor(now)
        oldest = self.market.first_open(inst, bar)
        if not history:
            oldest = max(oldest, current - (RECENT_BARS - 1) * bar.ms)
        lo, hi = window(oldest, current, bar.ms, after, before, limit, bar.floor)
        if lo > hi or current < oldest:
            return ok([])
        rows: list[list[str]] = []
        if hi == current:
            live = self.market.live([(inst.inst_id, bar, current)])[0]
            rows.append(okx_candle(inst, current, live.at(now), "0"))
            hi -= bar.ms
        rows.extend(await self._closed_rows(inst, bar, lo, hi))
        share = self.faults.empty_field_share
        if share > 0:
            seed = self.market.seed
            rows = [blank_field(r, seed, inst.inst_id, bar.name, share) for r in rows]
        return ok(rows)

    async def _closed_rows(self, inst: Instrument, bar: Bar, lo: int, hi: int) -> list[list[str]]:
        count = (hi - lo) // bar.ms + 1 if hi >= lo else 0
        if count * bar.minutes > _THREAD_MINUTES:
            raw = await asyncio.to_thread(self.market.closed_raw, inst.inst_id, bar, lo, count)
        else:
            raw = self.market.closed_raw(inst.inst_id, bar, lo, count)
        return [okx_candle(inst, r[0], r[1:], "1") for r in reversed(raw)]

    async def funding_rate(self, request: web.Request) -> web.Response:
        q = request.query
        inst_id = q.get("instId", "")
        self._rate(request, "funding-rate", inst_id)
        now = self.clock.now_ms()
        processing = round(self.faults.settle_processing_s * 1000)
        if inst_id == "ANY":
            ids = self.market.swap_ids()
            return ok([self.market.funding(i).current_row(now, processing) for i in ids])
        inst = self._inst(q, swap=True)
        return ok([self.market.funding(inst.inst_id).current_row(now, processing)])

    async def funding_rate_history(self, request: web.Request) -> web.Response:
        q = request.query
        self._rate(request, "funding-rate-history", q.get("instId", ""))
        inst = self._inst(q, swap=True)
        limit = capped(_limit(q, FUNDING_LIMIT), self.faults.cap_funding_history)
        after, before = _int(q, "after"), _int(q, "before")
        model = self.market.funding(inst.inst_id)
        now = self.clock.now_ms()
        # A settlement still "processing" is not in the history yet (settle_processing_s).
        newest = now - round(self.faults.settle_processing_s * 1000)
        lo = max(now - FUNDING_HISTORY_MS, -1 if before is None else before + 1)
        hi = newest + 1 if after is None else min(newest + 1, after)
        times = model.settlement_times(lo, hi)[-limit:]  # the newest `limit` of the window
        return ok(model.history_rows(times)[::-1])

    async def ticker(self, request: web.Request) -> web.Response:
        self._rate(request, "ticker")
        inst = self._inst(request.query)
        return ok(self.tape.tickers([inst.inst_id], self.clock.now_ms()))

    async def tickers(self, request: web.Request) -> web.Response:
        self._rate(request, "tickers")
        inst_type = request.query.get("instType", "")
        if not inst_type:
            raise OkxError("50014", "Parameter instType can not be empty", 400)
        if inst_type not in ("SPOT", "SWAP", "FUTURES", "OPTION"):
            raise OkxError("51000", "Parameter instType error", 400)
        ids = [i.inst_id for i in self.market.listed(inst_type)]
        return ok(self.tape.tickers(ids, self.clock.now_ms()))

    async def trades(self, request: web.Request) -> web.Response:
        self._rate(request, "trades")
        inst = self._inst(request.query)
        limit = _limit(request.query, TRADES_LIMIT)
        return ok(self.tape.trades(inst.inst_id, self.clock.now_ms(), limit))

    async def time(self, request: web.Request) -> web.Response:
        self._rate(request, "time")
        return ok([{"ts": str(self.clock.now_ms())}])
