"""The simulator's derived websocket bad days: the refused-subscription switch (`refuse_derived`,
`POST /_sim/refuse-derived`) through an unmodified ccxt.pro client, 60018 for the named channel
and id only; open-interest pushes that skip no change however late they are checked."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from okx_collector.simulator import DerivedMarket, Market
from okx_collector.simulator.derived_pushes import OpenInterestSub
from tests.sim_helpers import START_MS, pro_client, simulator
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


def test_a_late_open_interest_check_pushes_every_change_since_the_last() -> None:
    """Checked 30 s late (a loaded simulator at high speed), the subscription still pushes each
    3 s step at which open interest changed, oldest first: a client can tell the value in force
    at every instant."""
    derived = DerivedMarket(Market(7))
    model = derived.open_interest("BTC-USDT-SWAP")
    sub = OpenInterestSub(model, '{"channel":"open-interest","instId":"BTC-USDT-SWAP"}')
    t0 = START_MS - START_MS % 3_000 + 1_000
    assert len(sub.frames(t0)) == 1  # on subscribe: the value now
    pushed = [json.loads(f)["data"][0] for f in sub.frames(t0 + 30_000)]
    steps = range(t0 - 1_000, t0 + 30_000, 3_000)
    values = [derived.open_interest_at("BTC-USDT-SWAP", s)[1] for s in steps]
    changed = [s for s, before, now in zip(steps[1:], values, values[1:], strict=False)
               if now != before]  # fmt: skip
    assert 2 <= len(changed) < 10  # the seed has both kinds of steps
    assert [int(p["ts"]) for p in pushed] == changed
    for p in pushed:
        assert float(p["oi"]) == derived.open_interest_at("BTC-USDT-SWAP", int(p["ts"]))[1]
    assert sub.frames(t0 + 30_500) == []  # the same step again: nothing new
