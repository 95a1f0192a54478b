"""The simulator's websockets, through unmodified ccxt.pro (and a raw aiohttp client)."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import ccxt.pro
import pytest

from okx_collector.simulator.ws import text_frame
from sim_helpers import HOUR, MINUTE, pro_client, simulator, within

pytestmark = pytest.mark.timeout(30)


async def test_candle_pushes_and_the_confirm_transition() -> None:
    # 600x: a 1m candle closes every 0.1 s of real time
    async with simulator(speed=600.0, push_interval=0.02) as sim, pro_client(sim) as ex:
        seen: set[int] = set()
        while len(seen) < 4:
            rows = await within(ex.watch_ohlcv("BTC/USDT", "1m"))
            seen.update(r[0] for r in rows)
        await within(ex.un_watch_ohlcv("BTC/USDT", "1m"))
        now = sim.now_ms()
    pushes = [r for ch, inst, r in ex.rows if (ch, inst) == ("candle1m", "BTC-USDT")]
    closed = [r for r in pushes if r[8] == "1"]
    assert len(closed) >= 2
    for final in closed:
        ts = int(final[0])
        assert ts + MINUTE <= now
        [expected] = sim.market.candles("BTC-USDT", "1m", ts, ts + 1)
        assert [float(x) for x in final[1:6]] == list(expected[1:6])  # spot: vol = base
        in_progress = [r for r in pushes if r[0] == final[0] and r[8] == "0"]
        assert in_progress, "in-progress pushes precede the close"
        assert all(float(r[5]) < float(final[5]) for r in in_progress)
        # the push right after the close is the next candle, in progress
        after = pushes[pushes.index(final) + 1]
        assert int(after[0]) == ts + MINUTE and after[8] == "0"


async def test_in_progress_pushes_come_every_push_interval() -> None:
    async with simulator(speed=1.0, push_interval=0.1) as sim, pro_client(sim) as ex:
        await within(ex.watch_ohlcv("ETH/USDT:USDT", "15m"))
        started = time.monotonic()
        count = 0
        while time.monotonic() - started < 1.0:
            await within(ex.watch_ohlcv("ETH/USDT:USDT", "15m"))
            count += 1
        rows = [r for _, _, r in ex.rows]
    assert 6 <= count <= 14  # ~10 in 1 s at 0.1 s
    assert all(r[8] == "0" for r in rows) and len({r[0] for r in rows}) == 1
    assert len({(r[4], r[5]) for r in rows}) > 3  # the in-progress candle moves
    assert float(rows[0][6]) == pytest.approx(float(rows[0][5]) * 0.1)  # swap volCcy = base
    assert sim.stats.ws_pushes >= count


async def test_many_series_on_one_connection_and_utc8_channels() -> None:
    async with simulator(speed=60.0) as sim, pro_client(sim) as ex:
        pairs = [
            ["BTC/USDT", "15m"],
            ["ETH/USDT", "1h"],
            ["LINK/USDT:USDT", "4h"],
            ["DOT/USDT", "1d"],
            ["ADA/USDT:USDT", "1w"],
        ]
        got: set[tuple[str, str]] = set()
        while len(got) < len(pairs):
            update = await within(ex.watch_ohlcv_for_symbols(pairs))
            got.update((s, tf) for s, by_tf in update.items() for tf in by_tf)
        channels = {ch for ch, _, _ in ex.rows}
        day = next(r for ch, _, r in ex.rows if ch == "candle1D")
        assert sim.stats.ws_subscriptions == 5
    assert sim.stats.ws_subscriptions == 0  # the client left
    assert channels == {"candle15m", "candle1H", "candle4H", "candle1D", "candle1W"}
    assert int(day[0]) % (24 * HOUR) == 16 * HOUR  # OKX's candle1D is UTC+8-aligned


async def test_funding_rate_push() -> None:
    async with simulator(speed=120.0, push_interval=0.05) as sim, pro_client(sim) as ex:
        first = await within(ex.watch_funding_rate("BTC/USDT:USDT"))
        second = await within(ex.watch_funding_rate("BTC/USDT:USDT"), 3)
        now = sim.now_ms()
    assert first["symbol"] == "BTC/USDT:USDT" and first["interval"] == "8h"
    assert first["fundingTimestamp"] == now - now % (8 * HOUR) + 8 * HOUR
    assert int(second["info"]["ts"]) - int(first["info"]["ts"]) >= 30_000  # simulated seconds
    assert set(first["info"]) >= {"fundingRate", "fundingTime", "nextFundingTime", "ts"}


async def test_ping_pong_keeps_the_connection_alive() -> None:
    async with simulator() as sim, pro_client(sim, keep_alive_ms=200) as ex:
        await within(ex.watch_ohlcv("BTC/USDT", "1m"))
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            await within(ex.watch_ohlcv("BTC/USDT", "1m"))
    assert sim.stats.ws_pings >= 3


async def test_unknown_channel_or_instrument_is_60018() -> None:
    async with simulator() as sim, pro_client(sim) as ex:
        with pytest.raises(ccxt.BadRequest, match="60018"):
            await within(ex.watch_ohlcv("BTC/USDT", "1M"))  # candle1M: not simulated
        with pytest.raises(ccxt.BadRequest, match="60018"):
            await within(ex.watch_funding_rate("BTC/USDT"))  # spot has no funding
    assert sim.stats.ws_errors == 2


async def test_raw_protocol_acks_errors_and_pong() -> None:
    subscribe = {
        "op": "subscribe",
        "args": [
            {"channel": "candle1m", "instId": "BTC-USDT"},  # candles live on /business
            {"channel": "funding-rate", "instId": "NOPE-USDT-SWAP"},
            {"channel": "funding-rate", "instId": "ETH-USDT-SWAP"},
        ],
    }
    unsubscribe = {
        "op": "unsubscribe",
        "args": [{"channel": "funding-rate", "instId": "ETH-USDT-SWAP"}],
    }
    async with (
        simulator() as sim,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{sim.ws_url}/public") as ws,
    ):
        await ws.send_str(json.dumps(subscribe))
        frames = [json.loads(await within(ws.receive_str())) for _ in range(4)]
        await ws.send_str("ping")
        assert await within(ws.receive_str()) == "pong"
        await ws.send_str(json.dumps(unsubscribe))
        unsub = json.loads(await within(ws.receive_str()))
        await ws.send_str("{not json")
        illegal = json.loads(await within(ws.receive_str()))
    assert [f.get("event") for f in frames] == ["error", "error", "subscribe", None]
    assert frames[0]["code"] == frames[1]["code"] == "60018" and frames[0]["connId"]
    assert frames[2]["arg"] == {"channel": "funding-rate", "instId": "ETH-USDT-SWAP"}
    assert frames[3]["arg"]["channel"] == "funding-rate" and frames[3]["data"][0]["instId"] == (
        "ETH-USDT-SWAP"
    )
    assert unsub["event"] == "unsubscribe" and unsub["arg"]["instId"] == "ETH-USDT-SWAP"
    assert illegal["event"] == "error" and illegal["code"] == "60012"


async def test_two_clients_see_the_same_closed_candle() -> None:
    async with (
        simulator(speed=600.0, push_interval=0.02) as sim,
        pro_client(sim) as a,
        pro_client(sim) as b,
    ):

        def closed(ex: ccxt.pro.okx) -> dict[str, list[str]]:
            return {r[0]: r for _, _, r in ex.rows if r[8] == "1"}

        async def closes(ex: ccxt.pro.okx) -> None:
            while len(closed(ex)) < 3:
                await within(ex.watch_ohlcv("LINK/USDT", "1m"))

        await asyncio.gather(closes(a), closes(b))
        common = closed(a).keys() & closed(b).keys()
    assert common
    assert all(closed(a)[ts] == closed(b)[ts] for ts in common)


def test_text_frames_carry_their_length_as_rfc_6455_says() -> None:
    for n, header in ((5, b"\x81\x05"), (300, b"\x81\x7e\x01\x2c")):
        assert text_frame(b"x" * n) == header + b"x" * n
    big = text_frame(b"y" * 70_000)
    assert big[:2] == b"\x81\x7f" and int.from_bytes(big[2:10], "big") == 70_000
    assert len(big) == 10 + 70_000
