"""Every fault switch, observed by an unmodified ccxt client; and the /_sim admin routes."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import ccxt
import pytest

from okx_collector.simulator import Faults
from sim_helpers import pro_client, rest_client, simulator, within

pytestmark = pytest.mark.timeout(30)


async def test_dropped_connection_raises_network_error_then_resubscribe_works() -> None:
    async with simulator() as sim, pro_client(sim) as ex:
        await within(ex.watch_ohlcv("BTC/USDT", "1m"))
        waiting = asyncio.ensure_future(ex.watch_ohlcv("BTC/USDT", "1m"))
        waiting_funding = asyncio.ensure_future(ex.watch_funding_rate("BTC/USDT:USDT"))
        await within(waiting_funding)
        assert await sim.drop_connections() == 2
        with pytest.raises(ccxt.NetworkError):
            await within(waiting)
        rows = await within(ex.watch_ohlcv("BTC/USDT", "1m"))  # reconnects, resubscribes
        assert rows and sim.stats.ws_dropped == 2 and sim.stats.ws_connections >= 3


async def test_drop_with_okx_64008_notice() -> None:
    async with simulator() as sim, pro_client(sim) as ex, aiohttp.ClientSession() as http:
        await within(ex.watch_ohlcv("ETH/USDT", "1m"))
        waiting = asyncio.ensure_future(ex.watch_ohlcv("ETH/USDT", "1m"))
        await asyncio.sleep(0)
        async with http.post(f"{sim.rest_url}/_sim/drop", json={"notice": True}) as resp:
            assert await resp.json() == {"dropped": 1}
        with pytest.raises(ccxt.NetworkError, match="64008"):
            await within(waiting)
        assert await within(ex.watch_ohlcv("ETH/USDT", "1m"))


async def test_stop_pushing_stalls_but_keeps_the_connection() -> None:
    async with simulator() as sim, pro_client(sim, keep_alive_ms=200) as ex:
        await within(ex.watch_ohlcv("BTC/USDT", "1m"))
        sim.faults.stop_pushing = True
        await asyncio.sleep(0.1)  # let pushes already queued go out
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ex.watch_ohlcv("BTC/USDT", "1m"), 1.0)
        assert sim.stats.ws_open == 1 and sim.stats.ws_dropped == 0  # pongs kept it alive
        sim.faults.stop_pushing = False
        assert await within(ex.watch_ohlcv("BTC/USDT", "1m"))


async def test_withheld_pong_gives_request_timeout() -> None:
    async with simulator() as sim, pro_client(sim, keep_alive_ms=200) as ex:
        await within(ex.watch_ohlcv("BTC/USDT", "1m"))
        sim.faults.withhold_pong = True
        with pytest.raises(ccxt.RequestTimeout, match="ping-pong"):
            while True:
                await within(ex.watch_ohlcv("BTC/USDT", "1m"))
        sim.faults.withhold_pong = False
        assert await within(ex.watch_ohlcv("BTC/USDT", "1m"))


async def test_rest_5xx_share() -> None:
    async with simulator() as sim, rest_client(sim) as ex:
        sim.faults.rest_5xx_share = 1.0
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await ex.fetch_ohlcv("BTC/USDT", "15m", limit=5)
        sim.faults.rest_5xx_share = 0.5
        outcomes = []
        for _ in range(40):
            try:
                await ex.fetch_time()
                outcomes.append("ok")
            except ccxt.ExchangeNotAvailable:
                outcomes.append("5xx")
        assert 5 < outcomes.count("5xx") < 35
        assert sim.stats.injected_5xx == outcomes.count("5xx") + 1


async def test_rest_429_share() -> None:
    async with simulator() as sim, rest_client(sim) as ex:
        sim.faults.rest_429_share = 1.0
        with pytest.raises(ccxt.RateLimitExceeded):
            await ex.fetch_funding_rate("BTC/USDT:USDT")
        sim.faults.rest_429_share = 0.0
        await ex.fetch_funding_rate("BTC/USDT:USDT")
        assert sim.stats.injected_429 == 1


async def test_malformed_frames() -> None:
    async with simulator() as sim, aiohttp.ClientSession() as http:
        sim.faults.ws_malformed_share = 1.0
        async with http.ws_connect(f"{sim.ws_url}/business") as ws:
            await ws.send_str(
                json.dumps(
                    {"op": "subscribe", "args": [{"channel": "candle1m", "instId": "BTC-USDT"}]}
                )
            )
            ack = json.loads(await within(ws.receive_str()))  # acks are never broken
            push = await within(ws.receive_str())
        assert ack["event"] == "subscribe"
        with pytest.raises(ValueError):
            json.loads(push)
        assert sim.stats.ws_malformed >= 1


async def test_malformed_frame_stalls_ccxt_until_keepalive() -> None:
    # ccxt parses frames in a callback: a broken frame stops its receive loop, and only the
    # keep-alive notices (RequestTimeout); the next watch reconnects.
    async with simulator() as sim, pro_client(sim, keep_alive_ms=200) as ex:
        await within(ex.watch_ohlcv("BTC/USDT", "1m"))
        sim.faults.ws_malformed_share = 1.0
        with pytest.raises(ccxt.RequestTimeout):
            while True:
                await within(ex.watch_ohlcv("BTC/USDT", "1m"))
        sim.faults.ws_malformed_share = 0.0
        assert await within(ex.watch_ohlcv("BTC/USDT", "1m"))


async def test_rest_and_ws_latency() -> None:
    async with simulator() as sim, rest_client(sim) as ex, aiohttp.ClientSession() as http:
        sim.faults.rest_latency_ms = 300
        started = time.monotonic()
        await ex.fetch_time()
        assert time.monotonic() - started >= 0.3
        sim.faults.ws_latency_ms = 300
        async with http.ws_connect(f"{sim.ws_url}/public") as ws:
            started = time.monotonic()
            await ws.send_str("ping")
            assert await within(ws.receive_str()) == "pong"
            assert time.monotonic() - started >= 0.3


async def test_refused_and_rejected_websockets() -> None:
    async with simulator() as sim, pro_client(sim) as ex:
        sim.faults.refuse_ws = True
        with pytest.raises(ccxt.NetworkError):
            await within(ex.watch_ohlcv("BTC/USDT", "1m"))
        sim.faults.refuse_ws = False
        sim.faults.reject_subscribe = True
        await asyncio.sleep(0.2)  # ccxt backs off after a failed dial
        with pytest.raises(ccxt.BadRequest, match="60012"):
            await within(ex.watch_ohlcv("BTC/USDT", "1m"))
        assert sim.stats.ws_refused == 1


async def test_connections_dropped_after_a_while() -> None:
    async with simulator() as sim, pro_client(sim) as ex:
        sim.faults.ws_drop_after_s = 0.3
        started = time.monotonic()
        with pytest.raises(ccxt.NetworkError, match="1001"):
            while True:
                await within(ex.watch_ohlcv("BTC/USDT", "1m"))
        assert 0.25 < time.monotonic() - started < 3
        assert sim.stats.ws_dropped == 1


async def test_admin_routes() -> None:
    async with simulator() as sim, aiohttp.ClientSession() as http:
        base = f"{sim.rest_url}/_sim"
        async with http.get(f"{base}/faults") as resp:
            assert await resp.json() == Faults().as_dict()
        async with http.post(
            f"{base}/faults", json={"rest_5xx_share": 0.25, "stop_pushing": True}
        ) as resp:
            assert resp.status == 200 and (await resp.json())["rest_5xx_share"] == 0.25
        assert sim.faults.stop_pushing is True
        for bad in ({"rest_5xx_share": 2}, {"nope": 1}, {"stop_pushing": "yes"}, [1]):
            async with http.post(f"{base}/faults", json=bad) as resp:
                assert resp.status == 400 and "error" in await resp.json()
        assert sim.faults.rest_5xx_share == 0.25  # unchanged by the rejected updates
        async with http.post(f"{base}/drop") as resp:
            assert await resp.json() == {"dropped": 0}
        async with http.get(f"{base}/stats") as resp:
            stats = await resp.json()
        assert set(stats) >= {"rest_requests", "rate_limited", "ws_pushes", "ws_open"}
        async with http.get(f"{base}/clock") as resp:
            clock = await resp.json()
        assert clock["speed"] == 1.0 and abs(clock["now_ms"] - sim.now_ms()) < 1000


def test_faults_validate_assignments() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="between 0 and 1"):
        faults.ws_malformed_share = 1.5
    with pytest.raises(ValueError, match="true or false"):
        faults.withhold_pong = 1  # type: ignore[assignment]
    faults.rest_latency_ms = 5
    assert faults.rest_latency_ms == 5.0
    faults.reset()
    assert faults == Faults()
