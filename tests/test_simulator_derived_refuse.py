"""The simulator's refused-derived-subscription switch (`refuse_derived`, `POST /_sim/refuse-
derived`), through an unmodified ccxt.pro client: 60018 for the named channel and id only."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.sim_helpers import pro_client, simulator
from tests.test_simulator_derived import _frames


async def test_a_refused_channel_gets_60018_and_the_others_are_acked() -> None:
    async with simulator(speed=60.0) as sim, pro_client(sim) as ex:
        sim.refuse_derived("mark-price-candle", "BTC-USDT-SWAP")
        frames = await _frames(
            ex,
            "/business",
            [
                {"channel": "mark-price-candle1m", "instId": "BTC-USDT-SWAP"},  # refused
                {"channel": "mark-price-candle5m", "instId": "BTC-USDT-SWAP"},  # every bar
                {"channel": "mark-price-candle1m", "instId": "ETH-USDT-SWAP"},
                {"channel": "index-candle1m", "instId": "BTC-USDT"},
                {"channel": "candle1m", "instId": "BTC-USDT-SWAP"},
            ],
            0.5,
        )
        errors = [m for m in frames if isinstance(m, dict) and m.get("event") == "error"]
        assert [e["code"] for e in errors] == ["60018"] * 2
        assert "channel:mark-price-candle1m,instId:BTC-USDT-SWAP" in errors[0]["msg"]
        acks = [m["arg"] for m in frames if isinstance(m, dict) and m.get("event") == "subscribe"]
        assert [(a["channel"], a["instId"]) for a in acks] == [
            ("mark-price-candle1m", "ETH-USDT-SWAP"),
            ("index-candle1m", "BTC-USDT"),
            ("candle1m", "BTC-USDT-SWAP"),
        ]
        data = {(m["arg"]["channel"], m["arg"]["instId"]) for m in frames if "data" in m}
        assert ("mark-price-candle1m", "BTC-USDT-SWAP") not in data
        assert ("mark-price-candle1m", "ETH-USDT-SWAP") in data
        sim.refuse_derived("mark-price-candle", "BTC-USDT-SWAP", refused=False)
        again = await _frames(
            ex, "/business", [{"channel": "mark-price-candle1m", "instId": "BTC-USDT-SWAP"}], 0.3
        )
        assert not [m for m in again if isinstance(m, dict) and m.get("event") == "error"]


async def test_the_admin_route() -> None:
    async with simulator() as sim, aiohttp.ClientSession() as http:

        async def post(body: Any) -> tuple[int, Any]:
            async with http.post(f"{sim.rest_url}/_sim/refuse-derived", json=body) as resp:
                return resp.status, await resp.json()

        body = {"channel": "open-interest", "instId": "BTC-USDT-SWAP"}
        assert await post(body) == (200, {"refused": [["open-interest", "BTC-USDT-SWAP"]]})
        assert sim.derived.refuses("open-interest", "BTC-USDT-SWAP")
        assert await post({**body, "refused": False}) == (200, {"refused": []})
        assert (await post({"channel": "candle", "instId": "BTC-USDT"}))[0] == 400
        assert (await post({"channel": "open-interest"}))[0] == 400
        assert (await post({**body, "refused": "yes"}))[0] == 400
