"""OKX's bad days, as the simulator's switches, observed by an unmodified ccxt client: delisting,
new listings, maintenance, page caps, "" fields, settState, funding-interval changes.
(Websocket-only switches: test_simulator_baddays_ws.py.)"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import aiohttp
import ccxt
import pytest

from okx_collector.simulator import Faults
from sim_helpers import DAY, HOUR, MINUTE, START_MS, pro_client, rest_client, simulator, within

pytestmark = pytest.mark.timeout(30)


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url) as resp:
        return resp.status, json.loads(await resp.text())


# -- delisting -----------------------------------------------------------------------------------


async def test_delisted_instrument_is_gone_from_rest() -> None:
    async with simulator() as sim, rest_client(sim) as ex, aiohttp.ClientSession() as http:
        at = sim.delist("ETH-USDT-SWAP")
        assert sim.delisted == {"ETH-USDT-SWAP": at} and abs(at - sim.now_ms()) < 1000
        with pytest.raises(ccxt.BadSymbol, match="51001"):
            await ex.fetch_ohlcv("ETH/USDT:USDT", "15m", limit=5)
        with pytest.raises(ccxt.BadSymbol):
            await ex.fetch_ohlcv("ETH/USDT:USDT", "15m", since=START_MS - 30 * DAY, limit=5)
        with pytest.raises(ccxt.BadSymbol):
            await ex.fetch_funding_rate("ETH/USDT:USDT")
        with pytest.raises(ccxt.BadSymbol):
            await ex.fetch_funding_rate_history("ETH/USDT:USDT")
        with pytest.raises(ccxt.BadSymbol):
            await ex.fetch_ticker("ETH/USDT:USDT")
        with pytest.raises(ccxt.BadSymbol):
            await ex.fetch_trades("ETH/USDT:USDT")
        # the exact body OKX sends (OKX.md §7)
        for route in ("market/candles", "market/history-candles", "public/funding-rate"):
            url = f"{sim.rest_url}/api/v5/{route}?instId=ETH-USDT-SWAP"
            assert await _get(http, url) == (
                200,
                {"code": "51001", "msg": "Instrument ID does not exist.", "data": []},
            )
        tickers = await ex.fetch_tickers(["BTC/USDT:USDT"])
        assert "ETH/USDT:USDT" not in tickers and "BTC/USDT:USDT" in tickers
        rates = await ex.fetch_funding_rates()
        assert "ETH/USDT:USDT" not in rates and "BTC/USDT:USDT" in rates
        markets = await ex.load_markets(reload=True)
        assert "ETH/USDT:USDT" not in markets and "ETH/USDT" in markets
        # the oracle keeps the history up to the delisting
        hist = sim.market.candles("ETH-USDT-SWAP", "1m", at - HOUR, at + HOUR)
        assert hist and hist[-1][0] + MINUTE <= at and hist[-1][0] >= at - 2 * MINUTE
        with pytest.raises(ValueError):
            sim.delist("ETH-USDT-SWAP")
        with pytest.raises(ValueError):
            sim.list_instrument("ETH-USDT-SWAP")


async def test_delisted_subscribe_gets_60018_and_open_feeds_fall_silent() -> None:
    async with simulator() as sim, pro_client(sim) as ex, aiohttp.ClientSession() as http:
        await within(ex.watch_ohlcv("ADA/USDT", "1m"))
        sim.delist("ETH-USDT")
        with pytest.raises(ccxt.BadRequest, match="60018") as info:
            await within(ex.watch_ohlcv("ETH/USDT", "1m"))
        assert "instId:ETH-USDT doesn't exist" in str(info.value)
        # one subscribe naming a delisted and a listed instrument: OKX answers per arg
        async with http.ws_connect(f"{sim.ws_url}/business") as ws:
            args = [
                {"channel": "candle1m", "instId": "ETH-USDT"},
                {"channel": "candle1m", "instId": "BTC-USDT"},
            ]
            await ws.send_str(json.dumps({"op": "subscribe", "args": args}))
            first = json.loads(await within(ws.receive_str()))
            second = json.loads(await within(ws.receive_str()))
            push = json.loads(await within(ws.receive_str()))
            assert first["event"] == "error" and first["code"] == "60018"
            assert first["msg"] == (
                "Wrong URL or channel:candle1m,instId:ETH-USDT doesn't exist. Please use the "
                "correct URL, channel and parameters referring to API document."
            )
            assert first["connId"]
            assert second == {"event": "subscribe", "arg": args[1], "connId": first["connId"]}
            assert push["arg"] == args[1]
            # an open subscription on an instrument delisted later: pushes stop, no frame
            sim.delist("BTC-USDT")
            await asyncio.sleep(0.05)  # frames already queued go out
            while not ws._reader.is_eof() and ws._reader._buffer:  # drain what was queued
                await ws.receive()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.receive(), 0.4)  # push_interval is 0.05 s
        assert sim.stats.ws_open >= 1


# -- new listings --------------------------------------------------------------------------------


async def test_new_listing_served_from_list_time_and_matches_the_oracle() -> None:
    # speed 600: a 1m candle lasts 0.1 real s
    async with simulator(speed=600) as sim, rest_client(sim) as ex:
        list_time = sim.list_instrument("NEW-USDT-SWAP")
        assert sim.list_instrument("NEW-USDT") >= list_time
        with pytest.raises(ValueError):
            sim.list_instrument("NEW-USDT")
        with pytest.raises(ValueError):
            sim.list_instrument("not an id")
        markets = await ex.load_markets(reload=True)
        new = markets["NEW/USDT:USDT"]
        assert new["id"] == "NEW-USDT-SWAP" and new["created"] == list_time and new["active"]
        assert markets["NEW/USDT"]["created"] >= list_time
        first_open = -(-list_time // MINUTE) * MINUTE  # the first whole 1m bar
        # simulated time must pass (0.5 real s): one bounded sleep until the clock gets there
        await asyncio.sleep(sim.clock.real_at(first_open + 5 * MINUTE) - time.monotonic())
        rows = await ex.fetch_ohlcv("NEW/USDT:USDT", "1m", limit=300)
        now = sim.now_ms()
        assert rows[0][0] == first_open and len(rows) >= 5
        oracle = {c[0]: c for c in sim.market.candles("NEW-USDT-SWAP", "1m", 0, now, now_ms=now)}
        closed = [r for r in rows if r[0] in oracle]
        assert len(closed) >= 4
        for r in closed:
            assert r == list(oracle[r[0]][:6])
        hist = await ex.fetch_ohlcv("NEW/USDT", "1m", since=list_time - HOUR, limit=300)
        assert hist and hist[0][0] >= list_time
        rate = await ex.fetch_funding_rate("NEW/USDT:USDT")
        assert rate["interval"] == "8h" and rate["fundingTimestamp"] > now
        assert (await ex.fetch_ticker("NEW/USDT"))["last"] > 0
    async with simulator(speed=600) as sim, pro_client(sim) as pro:
        list_time = sim.list_instrument("NEW-USDT")
        await pro.load_markets(reload=True)
        got = await within(pro.watch_ohlcv("NEW/USDT", "1m"))
        assert all(r[0] >= list_time for r in got)


# -- maintenance ---------------------------------------------------------------------------------


async def test_maintenance_refuses_rest_and_websockets() -> None:
    async with simulator() as sim, rest_client(sim) as ex, pro_client(sim) as pro:
        await within(pro.watch_ohlcv("BTC/USDT", "1m"))
        waiting = asyncio.ensure_future(pro.watch_ohlcv("BTC/USDT", "1m"))
        await asyncio.sleep(0)
        sim.begin_maintenance()
        with pytest.raises(ccxt.NetworkError):
            await within(waiting)  # open connections are dropped
        with pytest.raises(ccxt.OnMaintenance, match="50001"):
            await ex.fetch_ohlcv("BTC/USDT", "1m", limit=5)
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await ex.fetch_time()
        with pytest.raises(ccxt.NetworkError):
            await within(pro.watch_ohlcv("BTC/USDT", "1m"))  # the upgrade gets HTTP 503
        async with aiohttp.ClientSession() as http:
            assert await _get(http, f"{sim.rest_url}/api/v5/public/time") == (
                503,
                {
                    "code": "50001",
                    "msg": "Service temporarily unavailable, please try again later.",
                    "data": [],
                },
            )
            async with http.get(f"{sim.rest_url}/_sim/clock") as resp:  # admin routes still work
                assert resp.status == 200
        sim.end_maintenance()
        assert await ex.fetch_time() > 0
        await asyncio.sleep(0.3)  # ccxt backs off after a failed dial
        assert await within(pro.watch_ohlcv("BTC/USDT", "1m"))


async def test_maintenance_with_notice_sends_64008_first() -> None:
    async with simulator() as sim, rest_client(sim) as ex, aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{sim.ws_url}/public") as ws:
            sim.begin_maintenance(notice_s=0.3)
            notice = json.loads(await within(ws.receive_str()))
            assert notice["event"] == "notice" and notice["code"] == "64008"
            assert notice["msg"] == (
                "The connection will soon be closed for a service upgrade. Please reconnect."
            )
            assert await ex.fetch_time() > 0  # not yet
            assert sim.maintenance.pending and not sim.maintenance.on
            closed = await within(ws.receive(), 3)  # closed when the window begins
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert sim.maintenance.on
        with pytest.raises(ccxt.OnMaintenance):
            await ex.fetch_time()
        sim.end_maintenance()
        assert not sim.maintenance.on and await ex.fetch_time() > 0


async def test_maintenance_notice_reaches_ccxt() -> None:
    async with simulator() as sim, pro_client(sim) as pro:
        await within(pro.watch_funding_rate("BTC/USDT:USDT"))
        waiting = asyncio.ensure_future(pro.watch_funding_rate("BTC/USDT:USDT"))
        await asyncio.sleep(0)
        sim.begin_maintenance(notice_s=5)
        with pytest.raises(ccxt.NetworkError, match="64008"):
            await within(waiting)
        sim.end_maintenance()  # cancels the announced window
        assert not sim.maintenance.pending and not sim.maintenance.on


# -- page caps -----------------------------------------------------------------------------------


async def test_page_caps_return_the_newest_rows() -> None:
    async with simulator() as sim, rest_client(sim) as ex:
        step = 15 * MINUTE
        since = (START_MS - 60 * DAY) // step * step
        sim.faults.cap_history_candles = 100
        rows = await ex.fetch_ohlcv("BTC/USDT", "15m", since=since, limit=300)
        assert len(rows) == 100 and rows[0][0] == since + 200 * step
        assert rows[-1][0] == since + 299 * step
        sim.faults.cap_candles = 50
        recent = await ex.fetch_ohlcv("BTC/USDT", "15m", limit=300)
        assert len(recent) == 50 and recent[-1][0] == (START_MS // step) * step
        sim.faults.cap_funding_history = 10
        history = await ex.fetch_funding_rate_history("BTC/USDT:USDT", limit=100)
        assert len(history) == 10
        newest = sim.market.funding_history("BTC-USDT-SWAP", 0, START_MS + 1, now_ms=START_MS)
        assert [h["timestamp"] for h in history] == [t for t, _, _ in newest[-10:]]
        sim.faults.reset()
        assert len(await ex.fetch_ohlcv("BTC/USDT", "15m", since=since, limit=300)) == 300


def test_int_faults_validate() -> None:
    faults = Faults()
    faults.cap_candles = 7
    assert faults.cap_candles == 7
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="integer >= 0"):
            faults.cap_history_candles = bad  # type: ignore[assignment]
    with pytest.raises(ValueError, match="between 0 and 1"):
        faults.empty_field_share = 2.0
    with pytest.raises(ValueError):
        faults.settle_processing_s = -1.0


# -- "" for absent numbers -----------------------------------------------------------------------


async def test_next_funding_rate_is_empty_and_ccxt_copes() -> None:
    async with simulator() as sim, rest_client(sim) as ex, pro_client(sim) as pro:
        rate = await ex.fetch_funding_rate("BTC/USDT:USDT")
        assert rate["info"]["nextFundingRate"] == "" and rate["nextFundingRate"] is None
        assert rate["interval"] == "8h"
        pushed = await within(pro.watch_funding_rate("BTC/USDT:USDT"))
        assert pushed["info"]["nextFundingRate"] == "" and pushed["nextFundingRate"] is None
        assert sim.stats.ws_pushes >= 1


async def test_empty_field_share_blanks_one_volume_field() -> None:
    async with simulator() as sim, rest_client(sim) as ex, aiohttp.ClientSession() as http:
        sim.faults.empty_field_share = 1.0
        url = f"{sim.rest_url}/api/v5/market/history-candles?instId=BTC-USDT&bar=1H&limit=300"
        _, body = await _get(http, url)
        rows = body["data"]
        assert len(rows) == 300
        assert all([f for f in r[5:8] if f == ""] == [""] for r in rows)
        assert {r[5:8].index("") for r in rows} == {0, 1, 2}  # vol, volCcy, volCcyQuote
        assert (await _get(http, url))[1]["data"][1:] == rows[1:]  # deterministic (closed rows)
        parsed = await ex.fetch_ohlcv("BTC/USDT", "1h", since=START_MS - 400 * HOUR, limit=300)
        assert any(r[5] is None for r in parsed) and any(r[5] is not None for r in parsed)
        sim.faults.empty_field_share = 0.3
        _, body = await _get(http, url)
        blanked = sum("" in r for r in body["data"])
        assert 50 < blanked < 130
        async with pro_client(sim) as pro:
            sim.faults.empty_field_share = 1.0
            for _ in range(3):
                await within(pro.watch_ohlcv("BTC/USDT", "1m"))  # ccxt does not crash
            assert any("" in row[5:8] for _, _, row in pro.rows)


# -- settState -----------------------------------------------------------------------------------


async def test_settle_processing_hides_the_new_settlement() -> None:
    # START_MS is 00:07:30 UTC: 450 s after the 00:00 settlement
    settlement = START_MS - START_MS % (8 * HOUR)
    async with simulator() as sim, rest_client(sim) as ex, pro_client(sim) as pro:
        sim.faults.settle_processing_s = 600
        rate = await ex.fetch_funding_rate("BTC/USDT:USDT")
        assert rate["info"]["settState"] == "processing"
        history = await ex.fetch_funding_rate_history("BTC/USDT:USDT")
        assert history[-1]["timestamp"] == settlement - 8 * HOUR
        pushed = await within(pro.watch_funding_rate("ETH/USDT:USDT"))
        assert pushed["info"]["settState"] == "processing"
        sim.faults.settle_processing_s = 300
        rate = await ex.fetch_funding_rate("BTC/USDT:USDT")
        assert rate["info"]["settState"] == "settled"
        history = await ex.fetch_funding_rate_history("BTC/USDT:USDT")
        assert history[-1]["timestamp"] == settlement
        sim.faults.settle_processing_s = 0
        assert (await ex.fetch_funding_rate("BTC/USDT:USDT"))["info"]["settState"] == "settled"


# -- funding-interval changes --------------------------------------------------------------------


async def test_funding_interval_change_now_and_in_the_past() -> None:
    async with simulator() as sim, rest_client(sim) as ex:
        nxt = sim.set_funding_interval("BTC-USDT-SWAP", 4)
        assert nxt == START_MS - START_MS % (8 * HOUR) + 8 * HOUR  # the next settlement
        rate = await ex.fetch_funding_rate("BTC/USDT:USDT")
        assert rate["fundingTimestamp"] == nxt and rate["nextFundingTimestamp"] == nxt + 4 * HOUR
        assert rate["interval"] == "4h"
        times = [t for t, _, _ in sim.market.funding_history("BTC-USDT-SWAP", nxt - DAY, nxt + DAY)]
        gaps = {b - a for a, b in itertools.pairwise(times)}
        assert gaps == {8 * HOUR, 4 * HOUR} and times.index(nxt) == 3
        # a change two days ago (8 h -> 1 h on ETH) shows in the served history
        change = sim.set_funding_interval("ETH-USDT-SWAP", 1, from_ms=START_MS - 2 * DAY)
        history = await ex.fetch_funding_rate_history("ETH/USDT:USDT", limit=400)
        stamps = [h["timestamp"] for h in history]
        oracle = sim.market.funding_history("ETH-USDT-SWAP", 0, START_MS + 1, now_ms=START_MS)
        assert 300 < len(stamps) < 400 and stamps[0] > START_MS - 92 * DAY  # 92 days kept
        assert stamps == [t for t, _, _ in oracle[-len(stamps) :]]
        assert [h["fundingRate"] for h in history] == [z for _, _, z in oracle[-len(stamps) :]]
        before = [t for t in stamps if t <= change]
        after = [t for t in stamps if t >= change]
        assert {b - a for a, b in itertools.pairwise(before)} == {8 * HOUR}
        assert {b - a for a, b in itertools.pairwise(after)} == {HOUR}
        assert len(set(h["fundingRate"] for h in history[-24:])) > 20  # no repeated values
        rate = await ex.fetch_funding_rate("ETH/USDT:USDT")
        assert rate["interval"] == "1h"
        sim.set_funding_interval("ETH-USDT-SWAP", 8)  # and back, from the next settlement
        with pytest.raises(ValueError):
            sim.set_funding_interval("ETH-USDT", 4)
        with pytest.raises(ValueError):
            sim.set_funding_interval("ETH-USDT-SWAP", 5)


# -- admin routes --------------------------------------------------------------------------------


async def test_baddays_admin_routes() -> None:
    async with simulator() as sim, aiohttp.ClientSession() as http:
        base = f"{sim.rest_url}/_sim"

        async def post(route: str, body: Any) -> tuple[int, Any]:
            async with http.post(f"{base}/{route}", json=body) as resp:
                return resp.status, await resp.json()

        status, body = await post("delist", {"instId": "DOT-USDT"})
        assert status == 200 and body == {
            "instId": "DOT-USDT",
            "delisted_ms": sim.delisted["DOT-USDT"],
        }
        assert (await post("delist", {"instId": "DOT-USDT"}))[0] == 400
        assert (await post("delist", {}))[0] == 400
        status, body = await post("list", {"instId": "FRESH-USDT-SWAP"})
        assert (
            status == 200 and sim.market.instrument("FRESH-USDT-SWAP").list_time == body["listTime"]
        )
        assert (await post("list", {"instId": "FRESH-USDT-SWAP"}))[0] == 400
        status, body = await post("maintenance", {"on": True, "notice_s": 30})
        assert body == {"maintenance": False, "pending": True}
        assert (await post("maintenance", {"on": False}))[1] == {
            "maintenance": False,
            "pending": False,
        }
        assert (await post("maintenance", {"on": True}))[1] == {
            "maintenance": True,
            "pending": False,
        }
        assert (await _get(http, f"{sim.rest_url}/api/v5/public/time"))[0] == 503
        assert (await post("maintenance", {"on": False}))[1]["maintenance"] is False
        assert (await post("maintenance", {"on": "yes"}))[0] == 400
        status, body = await post("quiet", {"instId": "ADA-USDT"})
        assert body == {"quiet": ["ADA-USDT"]} and sim.market.quiet == {"ADA-USDT"}
        assert (await post("quiet", {"instId": "ADA-USDT", "quiet": False}))[1] == {"quiet": []}
        assert (await post("quiet", {"instId": "NOPE"}))[0] == 400
        status, body = await post("funding-interval", {"instId": "LINK-USDT-SWAP", "hours": 2})
        assert status == 200 and body["hours"] == 2 and body["from_ms"] > START_MS
        assert (await post("funding-interval", {"instId": "LINK-USDT-SWAP", "hours": 7}))[0] == 400
        assert (await post("funding-interval", {"instId": "LINK-USDT", "hours": 2}))[0] == 400
