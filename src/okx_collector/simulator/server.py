"""The simulator: an aiohttp server speaking OKX v5 to unmodified ccxt, plus admin routes.

Admin routes (never rate-limited, never faulted):
    GET  /_sim/faults    current fault switches (JSON)
    POST /_sim/faults    change some: {"rest_5xx_share": 0.2}; 400 with a reason if invalid
    POST /_sim/drop      close every WS connection now; {"notice": true} sends OKX's 64008 first
    GET  /_sim/stats     counters (requests, 429s, pushes, connections, ...)
    GET  /_sim/clock     {"now_ms", "start_ms", "speed"}

Bad days (docs/simulator.md "Bad days"; each answers JSON, 400 {"error": ...} if refused):
    POST /_sim/delist            {"instId": "ETH-USDT"} -> {"instId", "delisted_ms"}
    POST /_sim/list              {"instId": "NEW-USDT-SWAP"} -> {"instId", "listTime"}
    POST /_sim/maintenance       {"on": true, "notice_s": 30} (or {"on": false})
                                 -> {"maintenance": bool, "pending": bool}
    POST /_sim/quiet             {"instId": "ADA-USDT", "quiet": true} -> {"quiet": [ids]}
    POST /_sim/refuse-derived    {"channel": "open-interest", "instId": "BTC-USDT-SWAP",
                                  "refused": true} -> {"refused": [[channel, id], ...]}
    POST /_sim/funding-interval  {"instId": "BTC-USDT-SWAP", "hours": 4, "from_ms": null}
                                 -> {"instId", "hours", "from_ms" (first settlement on it)}
"""

from __future__ import annotations

import asyncio
import json
import random
from types import TracebackType
from typing import Any

from aiohttp import web

from okx_collector.simulator.admin import baddays_routes
from okx_collector.simulator.bars import HOUR_MS
from okx_collector.simulator.clock import SimClock
from okx_collector.simulator.derived_market import DerivedMarket
from okx_collector.simulator.derived_rest import DerivedRest
from okx_collector.simulator.faults import Faults
from okx_collector.simulator.listing import new_instrument
from okx_collector.simulator.maintenance import Maintenance
from okx_collector.simulator.market import Market
from okx_collector.simulator.ratelimit import RateLimiter
from okx_collector.simulator.rest import RestApi, dumps
from okx_collector.simulator.stats import Stats
from okx_collector.simulator.ws import WsContext, ws_handler

_DROP_WAIT_S = 3.0


class Simulator:
    """An OKX-compatible server on host:port (port 0 = any free port). Use `async with`."""

    def __init__(
        self,
        *,
        seed: int = 1,
        speed: float = 1.0,
        start_ms: int | None = None,
        rate_limit_scale: float = 1.0,
        extra_instruments: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        push_interval: float = 0.5,
        faults: Faults | None = None,
        idle_drop_s: float = 30.0,
        subscribe_limit_per_hour: int = 480,
    ) -> None:
        if push_interval <= 0:
            raise ValueError(f"push_interval must be > 0, got {push_interval}")
        if idle_drop_s < 0 or subscribe_limit_per_hour < 0:
            raise ValueError("idle_drop_s and subscribe_limit_per_hour must be >= 0 (0 = off)")
        if extra_instruments < 0:
            raise ValueError(f"extra_instruments must be >= 0, got {extra_instruments}")
        self.seed = seed
        self.host = host
        self.port = port  # the bound port once started
        self.clock = SimClock(start_ms, speed)
        self.market = Market(seed, extra_instruments)  # expected values for tests
        self.derived = DerivedMarket(self.market)  # mark, index, open interest: likewise
        self.faults = faults or Faults()  # switches, also at /_sim/faults
        self.stats = Stats()  # counters, also at /_sim/stats
        self.limiter = RateLimiter(rate_limit_scale)
        self.maintenance = Maintenance()  # .on: in a maintenance window now
        self.delisted = self.market.delisted  # instId -> exchange ms it was delisted
        self._ws = WsContext(
            self.market,
            self.clock,
            self.faults,
            self.stats,
            push_interval,
            seed,
            idle_drop_s,
            subscribe_limit_per_hour,
            self.maintenance,
            self.derived,
        )
        self._rest = RestApi(
            self.market,
            self.clock,
            self.limiter,
            self.faults,
            self.stats,
            random.Random(seed),
            self.maintenance,
        )
        self.app = self._make_app()
        self._runner: web.AppRunner | None = None

    # -- URLs and time -------------------------------------------------------------------------

    @property
    def rest_url(self) -> str:
        """ccxt's `urls.api.rest`: "http://127.0.0.1:PORT"."""
        return f"http://{self._url_host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """ccxt's `urls.api.ws`: "ws://127.0.0.1:PORT/ws/v5" (ccxt appends /public, /business)."""
        return f"ws://{self._url_host}:{self.port}/ws/v5"

    @property
    def _url_host(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"[{host}]" if ":" in host else host

    def ccxt_config(self) -> dict[str, Any]:
        """The ccxt constructor config pointing at this simulator."""
        return {"urls": {"api": {"rest": self.rest_url, "ws": self.ws_url}}}

    def now_ms(self) -> int:
        """Simulated exchange time, int ms."""
        return self.clock.now_ms()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and serve; afterwards `port`, `rest_url` and `ws_url` are final."""
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])  # the port actually bound (port 0 = any)

    async def stop(self) -> None:
        """Close every connection and the listening socket."""
        if self._runner is None:
            return
        await self.drop_connections(count_as_dropped=False)
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def drop_connections(self, notice: bool = False, *, count_as_dropped: bool = True) -> int:
        """Close every WS connection now (after OKX's 64008 notice if `notice`); wait until they
        are closed; return how many there were."""
        conns = list(self._ws.connections)
        for conn in conns:
            if count_as_dropped:
                conn.drop(notice)
            else:
                conn.request_close(notice)
        if conns:
            await asyncio.wait(
                [asyncio.create_task(c.finished.wait()) for c in conns], timeout=_DROP_WAIT_S
            )
        return len(conns)

    # -- bad days (docs/simulator.md "Bad days") ---------------------------------------------

    def delist(self, inst_id: str) -> int:
        """Delist now: gone from instruments and tickers, 51001 on REST, 60018 on subscribe, open
        subscriptions fall silent. Returns the exchange ms (also in `self.delisted`)."""
        now = self.now_ms()
        self.market.delist(inst_id, now)
        return now

    def list_instrument(self, inst_id: str) -> int:
        """List `NEW-USDT` (spot) or `NEW-USDT-SWAP` (perpetual) now; returns its listTime.
        ValueError for an id listed now or before, or not OKX-shaped."""
        now = self.now_ms()
        self.market.add_instrument(new_instrument(self.seed, inst_id, now))
        return now

    def refuse_derived(self, channel: str, series_id: str, refused: bool = True) -> None:
        """Answer 60018 to `mark-price-candle*`, `index-candle*` or `open-interest` subscriptions
        of a listed id (see `DerivedMarket.refuse`)."""
        self.derived.refuse(channel, series_id, refused)

    def begin_maintenance(self, notice_s: float = 0.0) -> None:
        """Begin a maintenance window now, or after OKX's 64008 notice and `notice_s` real
        seconds (returns at once; call from the simulator's event loop)."""
        self.maintenance.begin(notice_s, lambda: self._ws.connections)

    def end_maintenance(self) -> None:
        """End the maintenance window (or cancel one announced)."""
        self.maintenance.end()

    def set_quiet(self, inst_id: str, quiet: bool = True) -> None:
        """No websocket pushes at all for this instrument while quiet; REST unchanged."""
        if inst_id not in self.market:
            raise ValueError(f"unknown instrument {inst_id!r}")
        if quiet:
            self.market.quiet.add(inst_id)
        else:
            self.market.quiet.discard(inst_id)

    def set_funding_interval(self, inst_id: str, hours: int, from_ms: int | None = None) -> int:
        """Settle this perpetual every `hours` from the first settlement at or after `from_ms`
        (default: now, i.e. the next settlement); returns that settlement time."""
        if isinstance(hours, bool) or not isinstance(hours, int) or hours < 1 or 24 % hours:
            raise ValueError(f"hours must divide 24 (1, 2, 4, 6, 8, 12, 24), got {hours!r}")
        if inst_id not in self.market.swap_ids():
            raise ValueError(f"{inst_id!r} is not a listed perpetual")
        start = self.now_ms() + 1 if from_ms is None else from_ms
        return self.market.funding(inst_id).set_interval(hours * HOUR_MS, start)

    # -- app -----------------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._rest.middleware])
        app.add_routes(self._rest.routes())
        app.add_routes(DerivedRest(self._rest, self.derived).routes())
        app.add_routes([ws_handler("public", self._ws), ws_handler("business", self._ws)])
        app.add_routes(
            [
                web.get("/_sim/faults", self._get_faults),
                web.post("/_sim/faults", self._post_faults),
                web.post("/_sim/drop", self._post_drop),
                web.get("/_sim/stats", self._get_stats),
                web.get("/_sim/clock", self._get_clock),
                *baddays_routes(self),
            ]
        )
        return app

    async def _get_faults(self, request: web.Request) -> web.Response:
        return _json(self.faults.as_dict())

    async def _post_faults(self, request: web.Request) -> web.Response:
        try:
            changes = json.loads(await request.text() or "{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object of fault switches")
            self.faults.update(changes)
        except ValueError as e:
            return _json({"error": str(e)}, status=400)
        return _json(self.faults.as_dict())

    async def _post_drop(self, request: web.Request) -> web.Response:
        notice = request.query.get("notice", "").lower() in ("1", "true", "yes")
        text = await request.text()
        if text.strip():
            try:
                body = json.loads(text)
            except ValueError:
                return _json({"error": 'expected a JSON object like {"notice": true}'}, 400)
            notice = notice or (isinstance(body, dict) and body.get("notice") is True)
        return _json({"dropped": await self.drop_connections(notice)})

    async def _get_stats(self, request: web.Request) -> web.Response:
        return _json(self.stats.as_dict())

    async def _get_clock(self, request: web.Request) -> web.Response:
        return _json(
            {"now_ms": self.now_ms(), "start_ms": self.clock.start_ms, "speed": self.clock.speed}
        )


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(text=dumps(payload), status=status, content_type="application/json")
