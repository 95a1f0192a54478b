"""Websocket bad days through an unmodified ccxt.pro client: quiet instruments, OKX's idle drop,
the 480 subscribe requests per hour per connection."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import ccxt
import pytest

from okx_collector.simulator import SimulatorThread
from sim_helpers import pro_client, rest_client, simulator, within

pytestmark = pytest.mark.timeout(30)


async def test_quiet_instrument_pushes_nothing_but_rest_serves_it() -> None:
    async with simulator() as sim, pro_client(sim) as ex, rest_client(sim) as rest:
        await within(ex.watch_ohlcv_for_symbols([["ADA/USDT", "1m"], ["BTC/USDT", "1m"]]))
        sim.set_quiet("ADA-USDT")
        await asyncio.sleep(0.05)  # pushes already queued go out
        seen = len(ex.rows)
        for _ in range(5):  # BTC keeps pushing on the same connection, ADA never
            await within(ex.watch_ohlcv("BTC/USDT", "1m"))
        assert {inst for _, inst, _ in ex.rows[seen:]} == {"BTC-USDT"}
        assert await rest.fetch_ohlcv("ADA/USDT", "1m", limit=3)
        with pytest.raises(TimeoutError):  # a new subscription gets its ack, then nothing
            await asyncio.wait_for(ex.watch_ohlcv("ADA/USDT", "5m"), 0.3)
        sim.set_quiet("ADA-USDT", False)
        assert await within(ex.watch_ohlcv("ADA/USDT", "1m"))


async def test_quiet_funding_rate() -> None:
    async with simulator() as sim, pro_client(sim) as ex:
        sim.set_quiet("DOT-USDT-SWAP")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ex.watch_funding_rate("DOT/USDT:USDT"), 0.3)
        assert sim.stats.ws_pushes == 0


async def test_idle_connection_is_dropped() -> None:
    async with simulator(idle_drop_s=0.3) as sim, aiohttp.ClientSession() as http:
        started = time.monotonic()
        async with http.ws_connect(f"{sim.ws_url}/business") as ws:  # never subscribes
            await ws.send_str("ping")  # pings do not keep a bare connection open
            assert await within(ws.receive_str()) == "pong"
            msg = await within(ws.receive(), 3)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4004
        assert 0.25 < time.monotonic() - started < 2
        assert sim.stats.ws_idle_dropped == 1


async def test_idle_drop_of_a_silent_subscription_unless_ccxt_pings() -> None:
    async with simulator(idle_drop_s=0.3) as sim:
        sim.set_quiet("ETH-USDT")
        async with pro_client(sim) as ex:  # ccxt pings every 18 s: too late
            with pytest.raises(ccxt.NetworkError, match="4004"):
                await within(ex.watch_ohlcv("ETH/USDT", "1m"))
        async with pro_client(sim, keep_alive_ms=100) as ex:  # pings every 0.1 s keep it
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ex.watch_ohlcv("ETH/USDT", "1m"), 0.8)
        assert sim.stats.ws_idle_dropped == 1
        async with pro_client(sim) as ex:  # pushes keep a connection alive too
            for _ in range(20):  # 1 s of pushes at push_interval 0.05
                await within(ex.watch_ohlcv("BTC/USDT", "1m"))
        assert sim.stats.ws_idle_dropped == 1


async def test_subscribe_requests_per_hour() -> None:
    async with (
        simulator(subscribe_limit_per_hour=3) as sim,
        aiohttp.ClientSession() as http,
    ):
        async with http.ws_connect(f"{sim.ws_url}/business") as ws:
            args = [{"channel": "candle1m", "instId": i} for i in ("BTC-USDT", "ETH-USDT")]
            for op in ("subscribe", "unsubscribe", "subscribe"):  # frames count, not args
                await ws.send_str(json.dumps({"op": op, "args": args}))
            await ws.send_str(
                json.dumps(
                    {"op": "subscribe", "args": [{"channel": "candle1m", "instId": "ADA-USDT"}]}
                )
            )
            while True:
                frame = json.loads(await within(ws.receive_str()))
                if frame.get("event") == "error":
                    break
                assert frame.get("arg", {}).get("instId") != "ADA-USDT"  # never subscribed
        assert frame["code"] == "60014" and frame["msg"] == "Requests too frequent."
        async with pro_client(sim) as ex:
            for symbol in ("BTC/USDT", "ETH/USDT", "DOT/USDT"):
                await within(ex.watch_ohlcv(symbol, "1m"))
            with pytest.raises(ccxt.RateLimitExceeded, match="60014"):
                await within(ex.watch_ohlcv("LINK/USDT", "1m"))


def test_simulator_thread_has_the_switches() -> None:
    with SimulatorThread(seed=3, rate_limit_scale=0.0) as sim:
        ex = ccxt.okx({"urls": {"api": {"rest": sim.rest_url}}, "enableRateLimit": False})
        at = sim.delist("LINK-USDT")
        assert sim.delisted == {"LINK-USDT": at}
        with pytest.raises(ccxt.BadSymbol):
            ex.load_markets()
            ex.fetch_ohlcv("LINK/USDT", "1m", limit=2)
        assert sim.list_instrument("NEW-USDT") > 0
        with pytest.raises(ValueError):
            sim.list_instrument("NEW-USDT")
        sim.begin_maintenance(notice_s=30)
        sim.end_maintenance()
        sim.begin_maintenance()
        with pytest.raises(ccxt.OnMaintenance):
            ex.fetch_time()
        sim.end_maintenance()
        sim.set_quiet("BTC-USDT")
        assert sim.set_funding_interval("BTC-USDT-SWAP", 4) > 0
