"""The simulator's REST side, through unmodified ccxt (async_support) over real sockets."""

from __future__ import annotations

import aiohttp
import ccxt.async_support as ccxt
import pytest

from okx_collector.simulator import Simulator
from sim_helpers import DAY, HOUR, MINUTE, START_MS, SWAPS, rest_client, simulator

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def sim() -> Simulator:  # type: ignore[misc]
    async with simulator() as s:
        yield s


async def test_markets_list_spot_pairs_and_perpetuals(sim: Simulator) -> None:
    async with rest_client(sim) as ex:
        for base in ("BTC", "ETH", "ADA", "DOT", "LINK"):
            spot, swap = ex.market(f"{base}/USDT"), ex.market(f"{base}/USDT:USDT")
            assert spot["id"] == f"{base}-USDT" and spot["spot"]
            assert swap["id"] == f"{base}-USDT-SWAP" and swap["swap"] and swap["linear"]
        assert ex.market("BTC/USDT:USDT")["contractSize"] == 0.01
        assert ex.market("BTC/USDT")["precision"]["price"] == 0.1
        assert len(ex.markets) == 10
    assert sim.stats.rest_by_route["public/instruments"] == 5  # SPOT FUTURES SWAP OPTION x2


async def test_extra_instruments_are_listed() -> None:
    async with simulator(extra_instruments=3) as sim, rest_client(sim) as ex:
        assert {"SIM0003/USDT", "SIM0003/USDT:USDT"} <= set(ex.symbols)
        assert len(ex.markets) == 16


@pytest.mark.parametrize("endpoint", ["Candles", "HistoryCandles"])
@pytest.mark.parametrize("symbol", ["BTC/USDT", "DOT/USDT:USDT"])
async def test_fetch_ohlcv_returns_the_market_values(
    sim: Simulator, endpoint: str, symbol: str
) -> None:
    async with rest_client(sim) as ex:
        rows = await ex.fetch_ohlcv(symbol, "15m", limit=300, params={"type": endpoint})
    now = sim.now_ms()
    assert len(rows) == 300
    in_progress = rows[-1]
    assert in_progress[0] == now - now % (15 * MINUTE)  # the last row is the open candle
    inst_id = ex.market_id(symbol)
    expected = sim.market.candles(inst_id, "15m", rows[0][0], in_progress[0] + 1, now_ms=now)
    assert [list(r) for r in rows[:-1]] == [list(e[:6]) for e in expected]


async def test_history_backfill_pages_by_since_and_limit(sim: Simulator) -> None:
    since = START_MS - START_MS % HOUR - 100 * DAY
    async with rest_client(sim) as ex:
        rows = await ex.fetch_ohlcv("ETH/USDT:USDT", "1h", since=since, limit=300)
    assert [r[0] for r in rows] == [since + i * HOUR for i in range(300)]
    expected = sim.market.candles("ETH-USDT-SWAP", "1h", since, since + 300 * HOUR)
    assert [list(r) for r in rows] == [list(e[:6]) for e in expected]
    assert rows[0][5] == expected[0][5]  # swap volume = volCcy = base currency


async def test_two_simulators_one_seed_serve_the_same_history() -> None:
    since = START_MS - START_MS % DAY - 20 * DAY
    pages = []
    for start in (START_MS, START_MS + 17 * DAY + 5 * HOUR):
        async with simulator(start_ms=start) as sim, rest_client(sim) as ex:
            pages.append(
                await ex.fetch_ohlcv(
                    "ADA/USDT", "15m", since=since, limit=300, params={"type": "HistoryCandles"}
                )
            )
    assert pages[0] == pages[1] and len(pages[0]) == 300


async def test_one_hour_candles_aggregate_the_15m_ones(sim: Simulator) -> None:
    since = START_MS - START_MS % DAY - 5 * DAY
    async with rest_client(sim) as ex:
        hours = await ex.fetch_ohlcv("BTC/USDT", "1h", since=since, limit=24)
        quarters = await ex.fetch_ohlcv("BTC/USDT", "15m", since=since, limit=96)
    assert len(hours) == 24 and len(quarters) == 96
    for i, h in enumerate(hours):
        q = quarters[4 * i : 4 * i + 4]
        assert h[0] == q[0][0] and h[1] == q[0][1] and h[4] == q[-1][4]
        assert h[2] == max(x[2] for x in q) and h[3] == min(x[3] for x in q)
        assert h[5] == pytest.approx(sum(x[5] for x in q), rel=1e-12)


async def test_before_after_are_exclusive_and_rows_newest_first(sim: Simulator) -> None:
    bar = 15 * MINUTE
    t = START_MS - START_MS % bar - 50 * bar
    async with rest_client(sim) as ex:
        page = await ex.public_get_market_history_candles(
            {"instId": "BTC-USDT", "bar": "15m", "after": str(t + 5 * bar), "before": str(t)}
        )
        latest = await ex.public_get_market_candles(
            {"instId": "BTC-USDT", "bar": "15m", "before": str(t), "limit": "3"}
        )
        capped = await ex.public_get_market_candles(
            {"instId": "BTC-USDT", "bar": "15m", "limit": "1000"}
        )
        recent = await ex.public_get_market_candles(
            {"instId": "BTC-USDT", "bar": "1m", "after": str(START_MS - 1441 * MINUTE)}
        )
    assert [int(r[0]) for r in page["data"]] == [t + 4 * bar, t + 3 * bar, t + 2 * bar, t + bar]
    assert all(r[8] == "1" for r in page["data"])
    now = sim.now_ms()
    assert [int(r[0]) for r in latest["data"]] == [now - now % bar - i * bar for i in range(3)]
    assert [r[8] for r in latest["data"]] == ["0", "1", "1"]
    assert len(capped["data"]) == 300
    assert recent["data"] == []  # /market/candles keeps only the latest 1,440 bars
    assert all(isinstance(x, str) for x in page["data"][0])


async def test_candles_never_serve_the_future() -> None:
    async with simulator(speed=1.0) as sim, rest_client(sim) as ex:
        page = await ex.public_get_market_history_candles(
            {"instId": "LINK-USDT", "bar": "1m", "before": str(START_MS + DAY)}
        )
        assert page["data"] == []
        rows = await ex.fetch_ohlcv("LINK/USDT", "1m", limit=5)
        assert rows[-1][0] <= sim.now_ms()


async def test_six_hours_and_longer_come_utc_and_utc8_aligned(sim: Simulator) -> None:
    async with rest_client(sim) as ex:
        utc = await ex.fetch_ohlcv("BTC/USDT", "1d", limit=3)  # ccxt asks for 1Dutc
        hk = await ex.public_get_market_candles({"instId": "BTC-USDT", "bar": "1D", "limit": "3"})
    assert all(r[0] % DAY == 0 for r in utc)
    assert all(int(r[0]) % DAY == 16 * HOUR for r in hk["data"])


async def test_volume_semantics_spot_and_swap(sim: Simulator) -> None:
    async with rest_client(sim) as ex:
        spot = (
            await ex.public_get_market_history_candles(
                {"instId": "BTC-USDT", "bar": "1H", "limit": "2"}
            )
        )["data"][1]
        swap = (
            await ex.public_get_market_history_candles(
                {"instId": "BTC-USDT-SWAP", "bar": "1H", "limit": "2"}
            )
        )["data"][1]
    assert spot[6] == spot[7]  # spot: volCcy = volCcyQuote = quote
    assert float(spot[5]) * float(spot[3]) <= float(spot[7]) <= float(spot[5]) * float(spot[2])
    assert float(swap[6]) == pytest.approx(float(swap[5]) * 0.01)  # base = contracts * ctVal
    assert float(swap[6]) * float(swap[3]) <= float(swap[7]) <= float(swap[6]) * float(swap[2])


async def test_funding_current_and_history(sim: Simulator) -> None:
    async with rest_client(sim) as ex:
        current = await ex.fetch_funding_rate("BTC/USDT:USDT")
        everything = await ex.fetch_funding_rates()
        history = await ex.fetch_funding_rate_history("BTC/USDT:USDT", limit=400)
        link = await ex.fetch_funding_rate_history(
            "LINK/USDT:USDT", since=START_MS - 2 * DAY, limit=100
        )
        raw = await ex.public_get_public_funding_rate_history({"instId": "BTC-USDT-SWAP"})
    now = sim.now_ms()
    funding_time, rate, next_time = sim.market.funding_current("BTC-USDT-SWAP", now)
    assert current["fundingTimestamp"] == funding_time == now - now % (8 * HOUR) + 8 * HOUR
    assert current["nextFundingTimestamp"] == next_time and current["interval"] == "8h"
    assert current["fundingRate"] == pytest.approx(rate, abs=2e-6)  # it drifts over time
    assert {f["symbol"] for f in everything.values()} >= {"BTC/USDT:USDT", "LINK/USDT:USDT"}
    expected = sim.market.funding_history("BTC-USDT-SWAP", 0, now + 1)
    assert [(h["timestamp"], h["fundingRate"]) for h in history] == [
        (t, realized) for t, _, realized in expected[-len(history) :]
    ]
    assert 270 <= len(history) <= 277  # ~92 days of 8 h settlements
    assert [h["timestamp"] for h in link] == list(
        range(START_MS - START_MS % (4 * HOUR) - 11 * 4 * HOUR, now, 4 * HOUR)
    )
    row = raw["data"][0]
    assert set(row) >= {"fundingRate", "realizedRate", "fundingTime", "instId", "method"}
    assert row["fundingRate"] != row["realizedRate"] and len(raw["data"]) == len(history)


async def test_ticker_trades_time(sim: Simulator) -> None:
    async with rest_client(sim) as ex:
        ticker = await ex.fetch_ticker("ETH/USDT")
        tickers = await ex.fetch_tickers(["BTC/USDT:USDT", "ETH/USDT:USDT"])
        trades = await ex.fetch_trades("BTC/USDT", limit=20)
        again = await ex.fetch_trades("BTC/USDT", limit=20)
        server_time = await ex.fetch_time()
    assert ticker["low"] <= ticker["last"] <= ticker["high"] and ticker["bid"] < ticker["ask"]
    assert set(tickers) == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    assert len(trades) == 20 and trades == sorted(trades, key=lambda t: t["timestamp"])
    assert {t["id"]: t["price"] for t in trades} | {t["id"]: t["price"] for t in again} == (
        {t["id"]: t["price"] for t in again} | {t["id"]: t["price"] for t in trades}
    )
    assert abs(server_time - sim.now_ms()) < 5_000


async def test_errors_are_okx_json(sim: Simulator) -> None:
    async with rest_client(sim) as ex:
        with pytest.raises(ccxt.BadSymbol):
            await ex.public_get_market_candles({"instId": "NOPE-USDT"})
        with pytest.raises(ccxt.BadRequest, match="51000"):
            await ex.public_get_market_candles({"instId": "BTC-USDT", "bar": "7m"})
        with pytest.raises(ccxt.BadRequest, match="50014"):
            await ex.public_get_market_candles({})
        with pytest.raises(ccxt.BadRequest):
            await ex.public_get_market_candles({"instId": "BTC-USDT", "after": "soon"})
        for inst_type, extra in (("FUTURES", {}), ("OPTION", {"uly": "BTC-USD"})):
            answer = await ex.public_get_public_instruments({"instType": inst_type, **extra})
            assert answer == {"code": "0", "msg": "", "data": []}
    assert sim.stats.rest_errors == 4


async def test_rate_limit_raises_rate_limit_exceeded() -> None:
    async with simulator(rate_limit_scale=0.25) as sim, rest_client(sim) as ex:
        assert sim.limiter.allowed("history-candles") == 5
        for _ in range(5):
            await ex.fetch_ohlcv("BTC/USDT", "15m", limit=2, params={"type": "HistoryCandles"})
        with pytest.raises(ccxt.RateLimitExceeded):
            await ex.fetch_ohlcv("BTC/USDT", "15m", limit=2, params={"type": "HistoryCandles"})
        await ex.fetch_ohlcv("BTC/USDT", "15m", limit=2)  # /market/candles has its own limit
        # funding limits are per instId
        for _ in range(2):
            await ex.fetch_funding_rate("ETH/USDT:USDT")
        with pytest.raises(ccxt.RateLimitExceeded):
            await ex.fetch_funding_rate("ETH/USDT:USDT")
        await ex.fetch_funding_rate("ADA/USDT:USDT")
    assert sim.stats.rate_limited == 2


async def test_raw_429_body_is_okx_shaped() -> None:
    async with simulator(rate_limit_scale=0.1) as sim, aiohttp.ClientSession() as http:
        url = f"{sim.rest_url}/api/v5/public/time"
        statuses = []
        for _ in range(2):
            async with http.get(url) as resp:
                statuses.append((resp.status, await resp.json()))
    assert statuses[0][0] == 200 and statuses[1] == (
        429,
        {"code": "50011", "msg": "Too Many Requests", "data": []},
    )


async def test_instruments_rows_carry_contract_fields(sim: Simulator) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{sim.rest_url}/api/v5/public/instruments?instType=SWAP") as resp,
    ):
        body = await resp.json()
    rows = {r["instId"]: r for r in body["data"]}
    assert sorted(rows) == sorted(SWAPS)
    for row in rows.values():
        assert row["uly"] and row["instFamily"] == row["uly"] and row["settleCcy"] == "USDT"
        assert row["ctType"] == "linear" and row["state"] == "live" and int(row["listTime"]) > 0
