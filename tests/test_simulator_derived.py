"""The simulator's mark-price candles, index candles and open interest, driven by unmodified ccxt
(async_support and pro) over real sockets: what ccxt asks, what it parses, limits and faults."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import ccxt.async_support as ccxt_async
import pytest

from okx_collector.pacing import OKX_LIMITS
from okx_collector.simulator import DerivedMarket, Market
from okx_collector.simulator.ratelimit import LIMITS
from sim_helpers import HOUR, MINUTE, START_MS, pro_client, rest_client, simulator, within

DERIVED_RULES = {
    # rule: (ccxt implicit method, params)
    "mark-price-candles": ("public_get_market_mark_price_candles", {"instId": "BTC-USDT-SWAP"}),
    "history-mark-price-candles": (
        "public_get_market_history_mark_price_candles",
        {"instId": "BTC-USDT-SWAP"},
    ),
    "index-candles": ("public_get_market_index_candles", {"instId": "BTC-USDT"}),
    "history-index-candles": ("public_get_market_history_index_candles", {"instId": "BTC-USDT"}),
    "open-interest": (
        "public_get_public_open_interest",
        {"instType": "SWAP", "instId": "BTC-USDT-SWAP"},
    ),
    "open-interest-history": (
        "public_get_rubik_stat_contracts_open_interest_history",
        {"instId": "BTC-USDT-SWAP", "period": "5m"},
    ),
}
# OKX's documented limits per 2 s (OKX.md §8, docs/simulator.md).
DOCUMENTED = {
    "mark-price-candles": 20,
    "history-mark-price-candles": 10,
    "index-candles": 20,
    "history-index-candles": 10,
    "open-interest": 20,
    "open-interest-history": 10,
}


def test_limits_are_okx_documented_numbers_on_both_sides() -> None:
    for rule, count in DOCUMENTED.items():
        assert LIMITS[rule] == count
        assert OKX_LIMITS[rule] == (count, 2.0)


async def test_ccxt_mark_and_index_ohlcv_equal_the_market() -> None:
    async with simulator() as sim, rest_client(sim) as ex:
        since = START_MS - 30 * 24 * HOUR  # ccxt's clock: older than 1,439 bars -> history
        for price, series in (("mark", "BTC-USDT-SWAP"), ("index", "BTC-USDT")):
            rows = await ex.fetch_ohlcv(
                "BTC/USDT:USDT", "1h", since=since, limit=100, params={"price": price}
            )
            want = (
                sim.derived.mark_candles(series, "1h", since, since + 100 * HOUR)
                if price == "mark"
                else sim.derived.index_candles(series, "1h", since, since + 100 * HOUR)
            )
            assert [tuple(r[:5]) for r in rows] == [tuple(w) for w in want]
            assert all(r[5] is None for r in rows)  # no volume in these rows
        assert sim.stats.rest_by_route["market/history-mark-price-candles"] == 1
        assert sim.stats.rest_by_route["market/history-index-candles"] == 1
        # Without since, ccxt asks the recent endpoints: the newest row is in progress.
        recent = await ex.fetch_ohlcv("BTC/USDT:USDT", "1m", params={"price": "mark"})
        assert len(recent) == 100 and recent[-1][0] == START_MS - START_MS % MINUTE
        assert sim.stats.rest_by_route["market/mark-price-candles"] == 1


async def test_recent_endpoints_keep_the_latest_1440_rows_100_per_page() -> None:
    async with simulator() as sim, rest_client(sim) as ex:
        current = START_MS - START_MS % MINUTE
        for method, inst in (
            (ex.public_get_market_mark_price_candles, "BTC-USDT-SWAP"),
            (ex.public_get_market_index_candles, "BTC-USDT"),
        ):
            page = (await method({"instId": inst, "bar": "1m", "limit": "300"}))["data"]
            assert len(page) == 100  # capped at OKX's maximum
            assert [r[5] for r in page[:2]] == ["0", "1"] and int(page[0][0]) == current
            oldest = current - 1439 * MINUTE
            edge = await method({"instId": inst, "bar": "1m", "after": str(oldest + MINUTE)})
            assert [int(r[0]) for r in edge["data"]] == [oldest]
            older = await method({"instId": inst, "bar": "1m", "after": str(oldest)})
            assert older["data"] == []


async def test_open_interest_through_ccxt() -> None:
    async with simulator() as sim, rest_client(sim) as ex:
        oi = await ex.fetch_open_interest("ETH/USDT:USDT")
        _, contracts, coin, usd = sim.derived.open_interest_at("ETH-USDT-SWAP", oi["timestamp"])
        assert (oi["openInterestAmount"], oi["baseVolume"], oi["openInterestValue"]) == (
            contracts,
            coin,
            usd,
        )
        every = (await ex.public_get_public_open_interest({"instType": "SWAP"}))["data"]
        assert {r["instId"] for r in every} == {
            "BTC-USDT-SWAP", "ETH-USDT-SWAP", "ADA-USDT-SWAP", "DOT-USDT-SWAP", "LINK-USDT-SWAP",
        }  # fmt: skip
        family = await ex.public_get_public_open_interest({"instType": "SWAP", "uly": "ADA-USDT"})
        assert [r["instId"] for r in family["data"]] == ["ADA-USDT-SWAP"]
        # ccxt's history call: since and limit become begin = since - 1 and end = since + limit.
        since = START_MS - START_MS % HOUR - 20 * HOUR
        hist = await ex.fetch_open_interest_history("ETH/USDT:USDT", "1h", since=since, limit=10)
        want = sim.derived.open_interest_history("ETH-USDT-SWAP", "1H", since, since + 10 * HOUR)
        got = [
            (h["timestamp"], h["openInterestAmount"], h["baseVolume"], h["openInterestValue"])
            for h in hist
        ]
        assert got == want and len(got) == 10


@pytest.mark.parametrize("rule", sorted(DERIVED_RULES))
async def test_each_endpoint_refuses_beyond_its_limit(rule: str) -> None:
    async with simulator(rate_limit_scale=1.0) as sim, rest_client(sim) as ex:
        method_name, params = DERIVED_RULES[rule]
        method = getattr(ex, method_name)
        allowed = sim.limiter.allowed(rule)
        results = await asyncio.gather(
            *(method(dict(params)) for _ in range(allowed + 3)), return_exceptions=True
        )
        refused = [r for r in results if isinstance(r, ccxt_async.RateLimitExceeded)]
        assert len(refused) == 3 and "50011" in str(refused[0])
        assert sum(isinstance(r, dict) for r in results) == allowed
        if "open-interest" in rule:  # per IP + instId: another perpetual is still served
            other = await method({**params, "instId": "ETH-USDT-SWAP"})
            assert other["code"] == "0"


async def test_faults_apply_to_the_new_endpoints() -> None:
    async with simulator() as sim, rest_client(sim) as ex:
        sim.faults.update({"cap_price_candles": 7, "cap_open_interest_history": 5})
        page = await ex.public_get_market_index_candles({"instId": "BTC-USDT", "bar": "1m"})
        assert len(page["data"]) == 7
        hist = await ex.public_get_rubik_stat_contracts_open_interest_history(
            {"instId": "BTC-USDT-SWAP", "period": "1H"}
        )
        assert len(hist["data"]) == 5
        assert [int(r[0]) for r in hist["data"]] == sorted(
            (int(r[0]) for r in hist["data"]), reverse=True
        )
        sim.delist("DOT-USDT-SWAP")
        with pytest.raises(ccxt_async.BadSymbol):
            await ex.public_get_market_mark_price_candles({"instId": "DOT-USDT-SWAP"})
        with pytest.raises(ccxt_async.BadSymbol):
            await ex.public_get_public_open_interest(
                {"instType": "SWAP", "instId": "DOT-USDT-SWAP"}
            )
        with pytest.raises(ccxt_async.BadRequest):  # a spot pair has no mark-price candles here
            await ex.public_get_market_mark_price_candles({"instId": "BTC-USDT"})
        with pytest.raises(ccxt_async.BadRequest):
            await ex.public_get_rubik_stat_contracts_open_interest_history(
                {"instId": "BTC-USDT-SWAP", "period": "2D"}
            )
        sim.begin_maintenance()
        with pytest.raises(ccxt_async.OnMaintenance):
            await ex.public_get_market_history_index_candles({"instId": "BTC-USDT"})
        sim.end_maintenance()
        sim.faults.update({"rest_5xx_share": 1.0})
        with pytest.raises(ccxt_async.ExchangeNotAvailable):
            await ex.public_get_public_open_interest({"instType": "SWAP"})


async def _frames(ex: Any, path: str, args: list[dict[str, str]], seconds: float) -> list[Any]:
    """Subscribe through ccxt's generic watch machinery and record every frame ccxt receives
    (ccxt.pro has no watch method for these channels)."""
    seen: list[Any] = []
    original = ex.handle_message

    def record(client: Any, message: Any) -> Any:
        seen.append(message)
        return original(client, message)

    ex.handle_message = record
    request = {"op": "subscribe", "args": args}
    watch = asyncio.ensure_future(ex.watch(ex.urls["api"]["ws"] + path, "never", request, "x"))
    await asyncio.sleep(seconds)
    watch.cancel()
    await asyncio.gather(watch, return_exceptions=True)  # a refusal rejects it: retrieved here
    ex.handle_message = original
    return seen


async def test_websocket_channels_push_confirmed_candles_and_open_interest() -> None:
    async with simulator(speed=60.0) as sim, pro_client(sim) as ex:
        args = [
            {"channel": "mark-price-candle1m", "instId": "BTC-USDT-SWAP"},
            {"channel": "index-candle1m", "instId": "BTC-USDT"},
        ]
        business = await _frames(ex, "/business", args, 2.5)
        pushes = [m for m in business if isinstance(m, dict) and "data" in m]
        closed = {}
        for m in pushes:
            for row in m["data"]:
                assert len(row) == 6 and row[5] in ("0", "1")
                if row[5] == "1":
                    closed[(m["arg"]["channel"], int(row[0]))] = row
        assert {c for c, _ in closed} == {"mark-price-candle1m", "index-candle1m"}
        for (channel, ts), row in closed.items():
            oracle = (
                sim.derived.mark_candles("BTC-USDT-SWAP", "1m", ts, ts + 1)
                if channel.startswith("mark")
                else sim.derived.index_candles("BTC-USDT", "1m", ts, ts + 1)
            )
            assert tuple(float(x) for x in row[1:5]) == oracle[0][1:]
        public = await _frames(
            ex, "/public", [{"channel": "open-interest", "instId": "ADA-USDT-SWAP"}], 1.0
        )
        oi = [m["data"][0] for m in public if isinstance(m, dict) and "data" in m]
        assert len(oi) >= 3  # 60 simulated s: up to 20 steps of 3 s, unchanged ones not pushed
        assert len(oi) < 21
        for row in oi:
            values = sim.derived.open_interest_at("ADA-USDT-SWAP", int(row["ts"]))
            assert (float(row["oi"]), float(row["oiCcy"]), float(row["oiUsd"])) == values[1:]
        assert len({(r["oi"], r["ts"]) for r in oi}) == len(oi)


async def test_websocket_refusals_and_silence() -> None:
    async with simulator() as sim, pro_client(sim) as ex:
        sim.delist("DOT-USDT-SWAP")
        sim.faults.update({"stop_pushing": True})
        frames = await _frames(
            ex,
            "/business",
            [
                {"channel": "mark-price-candle1m", "instId": "DOT-USDT-SWAP"},
                {"channel": "mark-price-candle1m", "instId": "BTC-USDT"},  # spot: no mark
                {"channel": "index-candle1m", "instId": "NOPE-USDT"},
                {"channel": "index-candle1m", "instId": "DOT-USDT"},  # its spot pair is listed
            ],
            0.5,
        )
        errors = [m for m in frames if isinstance(m, dict) and m.get("event") == "error"]
        assert [e["code"] for e in errors] == ["60018"] * 3
        acks = [m["arg"] for m in frames if isinstance(m, dict) and m.get("event") == "subscribe"]
        assert acks == [{"channel": "index-candle1m", "instId": "DOT-USDT"}]
        assert not [m for m in frames if isinstance(m, dict) and "data" in m]  # stop_pushing
        wrong_url = await _frames(
            ex, "/public", [{"channel": "mark-price-candle1m", "instId": "BTC-USDT-SWAP"}], 0.3
        )
        assert [json.dumps(m) for m in wrong_url if "60018" in json.dumps(m)]
        await within(sim.drop_connections(), 5)


def test_values_are_a_function_of_seed_and_time_only() -> None:
    one, same, other = (DerivedMarket(Market(seed)) for seed in (7, 7, 8))
    start = START_MS - 3 * HOUR
    # Computed in another order and over other ranges first: the same values.
    same.mark_candles("ETH-USDT-SWAP", "1m", start + HOUR, start + 2 * HOUR)
    for d in (one, same):
        assert d.open_interest_at("ETH-USDT-SWAP", start + 5)[1] > 0
    for call in (
        lambda d: d.mark_candles("ETH-USDT-SWAP", "15m", start, START_MS),
        lambda d: d.index_candles("ETH-USDT", "1h", start, START_MS),
        lambda d: d.open_interest_history("ETH-USDT-SWAP", "5m", start, START_MS),
        lambda d: [d.open_interest_at("ETH-USDT-SWAP", start + k * 1_234) for k in range(20)],
    ):
        assert call(one) == call(same) != call(other)
