"""OKX v5 websockets: `/ws/v5/business` (candle, mark-price-candle, index-candle channels) and
`/ws/v5/public` (funding-rate, open-interest).

Each connection runs three tasks: a reader (subscribe/unsubscribe/ping), a pusher (asks its
`PushScheduler` for the frames due, sleeps until the next are), and a writer, which sends queued
frames in order after the latency fault and breaks a share of data frames (malformed fault).
Frames with nothing queued before them and no latency to wait go to the socket at once, without
the hop through the writer: at a candle close every connection's confirms are on the wire before
any connection starts its next candles.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import struct
import time
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from okx_collector.simulator.bars import BARS
from okx_collector.simulator.clock import SimClock
from okx_collector.simulator.derived_market import DerivedMarket
from okx_collector.simulator.derived_pushes import (
    INDEX_CHANNEL,
    MARK_CHANNEL,
    OI_CHANNEL,
    OpenInterestSub,
    PriceCandleSub,
)
from okx_collector.simulator.faults import Faults
from okx_collector.simulator.maintenance import MAINTENANCE_CODE, MAINTENANCE_MSG, Maintenance
from okx_collector.simulator.market import Market
from okx_collector.simulator.pushes import CandleSub, FundingSub, PushScheduler, Sub
from okx_collector.simulator.stats import Stats
from okx_collector.simulator.wslimits import IdleWatch, RequestWindow

FUNDING_CHANNEL = "funding-rate"
_MIN_SLEEP_S = 0.002
_MAX_SLEEP_S = 1.0  # re-read the fault switches (ws_drop_after_s) at least this often
_MAX_QUEUED = 10_000  # frame batches queued for a client before it is dropped as too slow
_DROP_CODE = 1001  # "going away"
# OKX's close code for "No data received in 30s" (its 4xxx close-code table; ccxt maps 4004 to
# NetworkError) [UNVERIFIED that OKX still sends it]
_IDLE_CODE = 4004
_HIGH_WATER = 4 << 20  # bytes unsent to a client before its writer waits for them to drain
_DRAIN_POLL_S = 0.01
_log = logging.getLogger(__name__)
_NOTICE_64008 = "The connection will soon be closed for a service upgrade. Please reconnect."


@dataclass
class WsContext:
    """What every connection shares."""

    market: Market
    clock: SimClock
    faults: Faults
    stats: Stats
    push_interval: float  # real seconds between in-progress candle pushes
    seed: int
    idle_drop_s: float = 30.0  # real s: OKX's idle drop (wslimits.IdleWatch); 0 = never
    subscribe_limit_per_hour: int = 480  # subscribe/unsubscribe frames per connection; 0 = off
    maintenance: Maintenance = field(default_factory=Maintenance)
    derived: DerivedMarket | None = None  # mark, index, open-interest channels (None: refused)
    connections: set[Connection] = field(default_factory=set)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def next_id(self) -> int:
        return next(self._ids)


class Connection:
    """One websocket client."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        kind: str,
        ctx: WsContext,
    ) -> None:
        self.ws, self.kind, self.ctx = ws, kind, ctx
        self.transport = transport  # the socket under `ws`, for bursts of frames (see _write)
        number = ctx.next_id()
        self.conn_id = f"{number:08x}"  # OKX's connId
        self.rng = random.Random(f"{ctx.seed}/{number}")  # fault draws, funding push jitter
        self.subs: dict[tuple[str, str], Sub] = {}  # (channel, instId) -> subscription
        self.opened = time.monotonic()
        self.idle = IdleWatch(ctx.idle_drop_s, self.opened)
        self.requests = RequestWindow(ctx.subscribe_limit_per_hour)
        self.idle_dropped = False  # closed by the idle rule (close code 4004)
        self.closing = False  # no more frames: a close was requested or the client left
        self.dropped = False  # closed by the simulator (drop, fault), not by the client
        self.notice = False  # send OKX's 64008 notice before closing
        self.done = asyncio.Event()  # set to make serve() close the connection
        self.finished = asyncio.Event()  # set once the socket is closed
        self._out: asyncio.Queue[tuple[float, list[str], bool]] = asyncio.Queue()
        self._writing = False  # the writer holds frames taken from _out (sending or waiting)
        self._wake = asyncio.Event()  # new subscriptions: recompute the next wake-up
        self._schedule = PushScheduler(
            ctx.market, ctx.clock, ctx.push_interval, self.rng, ctx.faults
        )

    # -- incoming ------------------------------------------------------------------------------

    def on_text(self, text: str) -> None:
        """Handle one text frame from the client."""
        stats, faults = self.ctx.stats, self.ctx.faults
        if text == "ping":
            stats.ws_pings += 1
            self.idle.pinged(time.monotonic())
            if not faults.withhold_pong:
                self._send(["pong"])
            return
        try:
            msg = json.loads(text)
        except ValueError:
            msg = None
        op = msg.get("op") if isinstance(msg, dict) else None
        args = msg.get("args") if isinstance(msg, dict) else None
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            self._error("60012", f"Illegal request: {text}")
            return
        if not self.requests.allow(time.monotonic()):  # OKX: 480 requests/hour/connection
            self._error("60014", "Requests too frequent.")
            return
        added: list[Sub] = []
        for arg in args:
            if not isinstance(arg, dict):
                self._error("60012", f"Illegal request: {text}")
                continue
            channel, inst_id = str(arg.get("channel", "")), str(arg.get("instId", ""))
            echo = json.dumps({"channel": channel, "instId": inst_id}, separators=(",", ":"))
            if op == "unsubscribe":
                gone = self.subs.pop((channel, inst_id), None)
                if gone is not None:
                    gone.active = False
                    stats.ws_subscriptions -= 1
                self._event("unsubscribe", echo)
            elif faults.reject_subscribe:
                self._error("60012", f"Illegal request: {text}")
            else:
                self._subscribe(channel, inst_id, echo, added)
        self.idle.subscriptions(len(self.subs), time.monotonic())
        if added:
            frames = self._schedule.add(added, time.monotonic(), self.ctx.clock.now_ms())
            if not faults.stop_pushing:
                self._send(frames, data=True)
            self._wake.set()

    def _subscribe(self, channel: str, inst_id: str, echo: str, added: list[Sub]) -> None:
        """One arg of a subscribe: OKX answers each arg on its own (ack or 60018)."""
        sub = self._make_sub(channel, inst_id, echo)
        if sub is None:
            self._error(
                "60018",
                f"Wrong URL or channel:{channel},instId:{inst_id} "
                "doesn't exist. Please use the correct URL, channel and "
                "parameters referring to API document.",
            )
            return
        self._event("subscribe", echo)
        if (channel, inst_id) not in self.subs:  # OKX acks a repeat; one feed only
            self.ctx.stats.ws_subscriptions += 1
            self.subs[(channel, inst_id)] = sub
            added.append(sub)

    def _make_sub(self, channel: str, inst_id: str, echo: str) -> Sub | None:
        market, derived = self.ctx.market, self.ctx.derived
        if derived is not None and derived.refuses(channel, inst_id):  # bad day: `refuse`
            return None
        if self.kind == "business" and derived is not None and channel.startswith(INDEX_CHANNEL):
            bar = BARS.get(channel.removeprefix(INDEX_CHANNEL))
            if bar is None or not derived.index_instruments(inst_id):  # none listed behind it
                return None
            model = derived.index(inst_id)
            return PriceCandleSub(model, bar, echo, derived.first_open(model, bar))
        if not market.is_listed(inst_id):  # unknown or delisted: 60018 (OKX.md §7)
            return None
        inst = market.instrument(inst_id)
        if self.kind == "business" and channel.startswith("candle"):
            bar = BARS.get(channel.removeprefix("candle"))
            return None if bar is None else CandleSub(inst, bar, echo)
        if self.kind == "public" and channel == FUNDING_CHANNEL and inst.is_swap:
            return FundingSub(market.funding(inst_id), echo)
        if derived is None or not inst.is_swap:
            return None
        if self.kind == "business" and channel.startswith(MARK_CHANNEL):
            bar = BARS.get(channel.removeprefix(MARK_CHANNEL))
            model = derived.mark(inst_id)
            return (
                None if bar is None else PriceCandleSub(model, bar, echo, bar.ceil(inst.list_time))
            )
        if self.kind == "public" and channel == OI_CHANNEL:
            return OpenInterestSub(derived.open_interest(inst_id), echo)
        return None

    # -- outgoing ------------------------------------------------------------------------------

    def _event(self, event: str, echo: str) -> None:
        self._send([f'{{"event":"{event}","arg":{echo},"connId":"{self.conn_id}"}}'])

    def _error(self, code: str, msg: str) -> None:
        self.ctx.stats.ws_errors += 1
        body = {"event": "error", "code": code, "msg": msg, "connId": self.conn_id}
        self._send([json.dumps(body, separators=(",", ":"))])

    def notify_upgrade(self) -> None:
        """Send OKX's 64008 notice ("closed soon for a service upgrade") and stay open."""
        self._send([self._notice_frame()])

    def _notice_frame(self) -> str:
        body = {"event": "notice", "code": "64008", "msg": _NOTICE_64008, "connId": self.conn_id}
        return json.dumps(body, separators=(",", ":"))

    def _send(self, frames: list[str], data: bool = False) -> None:
        if data and frames:
            self.idle.pushed(time.monotonic())
        latency = self.ctx.faults.ws_latency_ms
        transport = self.transport
        if (
            latency <= 0
            and not self._writing
            and self._out.empty()
            and transport is not None
            and not transport.is_closing()
            and transport.get_write_buffer_size() <= _HIGH_WATER
        ):  # nothing to keep order with or to wait for: on the wire now
            transport.write(self._burst(frames, data))
            return
        if self._out.qsize() >= _MAX_QUEUED:
            self.dropped = True  # a client this slow is dropped, as OKX does
            self.request_close()
            return
        self._out.put_nowait((time.monotonic() + latency / 1000, frames, data))

    async def writer(self) -> None:
        """Send queued frames in order, after their latency."""
        while not self.closing:
            due, frames, data = await self._out.get()
            self._writing = True
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._write(self._burst(frames, data))
            self._writing = False

    def _burst(self, frames: list[str], data: bool) -> bytes:
        """Frames as the bytes of one write to the socket, as a server's own buffering would
        send them: aiohttp writes each frame on its own, a system call per frame (a quarter of
        the simulator's CPU at 8,000 pushes/s, and as many reads for the client). Breaks a share
        of data frames (malformed fault)."""
        stats, share = self.ctx.stats, self.ctx.faults.ws_malformed_share
        parts = []
        for text in frames:
            if data and share > 0 and self.rng.random() < share:
                text = text[: len(text) // 2]
                stats.ws_malformed += 1
            parts.append(text_frame(text.encode()))
        if data:
            stats.ws_pushes += len(frames)
        return b"".join(parts)

    async def _write(self, burst: bytes) -> None:
        """Send a burst; a client that stops reading makes its socket buffer grow: wait for it
        to drain (and drop it if it never does, see `_send`)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client is gone")
        transport.write(burst)
        # (Polled: the event that signals a drain belongs to aiohttp's protocol, not its API.)
        while transport.get_write_buffer_size() > _HIGH_WATER and not self.closing:  # noqa: ASYNC110
            await asyncio.sleep(_DRAIN_POLL_S)

    # -- pushes --------------------------------------------------------------------------------

    async def pusher(self) -> None:
        """Send what the schedule says is due; sleep until the next push, close or drop."""
        ctx = self.ctx
        while not self.closing:
            now_real = time.monotonic()
            drop_after = ctx.faults.ws_drop_after_s
            if drop_after > 0 and now_real - self.opened >= drop_after:
                self.drop()
                return
            confirms = self._schedule.confirms(ctx.clock.now_ms())
            if confirms:
                if not ctx.faults.stop_pushing:
                    self._send(confirms, data=True)
                # Let every connection send its close before any builds its next candles.
                await asyncio.sleep(0)
                if self.closing:
                    return
                now_real = time.monotonic()
            frames = self._schedule.due(now_real, ctx.clock.now_ms())
            if frames and not ctx.faults.stop_pushing:
                self._send(frames, data=True)
            if now_real >= self.idle.deadline():
                self.idle_dropped = True
                ctx.stats.ws_idle_dropped += 1
                self.drop()
                return
            wake = min(self._schedule.next_wake(), self.idle.deadline())
            if drop_after > 0:
                wake = min(wake, self.opened + drop_after)
            self._wake.clear()
            timeout = min(max(wake - time.monotonic(), _MIN_SLEEP_S), _MAX_SLEEP_S)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    # -- lifecycle -----------------------------------------------------------------------------

    def drop(self, notice: bool = False) -> None:
        """Close this connection from the server side (counted in stats.ws_dropped)."""
        if not self.dropped:
            self.ctx.stats.ws_dropped += 1
        self.dropped = True
        self.request_close(notice)

    def request_close(self, notice: bool = False) -> None:
        """Ask the connection's handler to close it now (after OKX's 64008 notice if asked)."""
        self.closing = True
        self.notice = self.notice or notice
        self.done.set()

    async def reader(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                self.on_text(msg.data)
            if self.closing:
                break

    async def serve(self) -> None:
        """Run the reader, writer and pusher until the client leaves or a close is requested,
        then close the socket."""
        tasks = [asyncio.create_task(t) for t in (self.reader(), self.writer(), self.pusher())]
        for task in tasks:
            task.add_done_callback(lambda _: self.done.set())
        try:
            await self.done.wait()
        finally:
            self.closing = True
            for task in tasks:
                task.cancel()
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, Exception) and not isinstance(result, ConnectionError):
                    _log.error("websocket %s failed", self.conn_id, exc_info=result)
            with contextlib.suppress(ConnectionError, RuntimeError):
                if self.notice:
                    await self.ws.send_str(self._notice_frame())
                code = _IDLE_CODE if self.idle_dropped else _DROP_CODE if self.dropped else 1000
                await self.ws.close(code=code)
            self.finished.set()


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented websocket text frame (RFC 6455 5.2: a server never masks)."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


def ws_handler(kind: str, ctx: WsContext) -> web.RouteDef:
    """The route for `/ws/v5/<kind>`."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if ctx.maintenance.on:  # OKX.md §7: websocket upgrades fail during maintenance
            ctx.stats.ws_refused += 1
            return web.Response(
                status=503,
                text=json.dumps({"code": MAINTENANCE_CODE, "msg": MAINTENANCE_MSG}),
                content_type="application/json",
            )
        if ctx.faults.refuse_ws:
            ctx.stats.ws_refused += 1
            return web.Response(
                status=503,
                text='{"code":"50026","msg":"System error"}',
                content_type="application/json",
            )
        ws = web.WebSocketResponse(compress=False, timeout=2.0, max_msg_size=1 << 20)
        await ws.prepare(request)
        conn = Connection(ws, request.transport, kind, ctx)
        ctx.connections.add(conn)
        ctx.stats.ws_connections += 1
        ctx.stats.ws_open += 1
        try:
            await conn.serve()
        finally:
            ctx.connections.discard(conn)
            ctx.stats.ws_open -= 1
            ctx.stats.ws_subscriptions -= len(conn.subs)
        return ws

    return web.get(f"/ws/v5/{kind}", handle)
