"""The exchange layer against the simulator: paging, confirm recovery, error classification."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import ccxt.async_support as ccxt_async
import pytest

from okx_collector.errors import (
    BadInput,
    ExchangeMaintenance,
    ExchangeRejected,
    ExchangeUnavailable,
    InstrumentGone,
)
from okx_collector.exchange import OkxExchange
from okx_collector.instruments import Instrument
from okx_collector.models import Candle, FundingObservation, RawCandle
from okx_collector.okx_answers import classify
from okx_collector.okx_ws import MARKET_INFO_KEYS
from okx_collector.simulator import Simulator
from okx_collector.timeframes import DAY_MS, Timeframe

TF15 = Timeframe.parse("15m")


async def connected(sim: Simulator, **kwargs: object) -> OkxExchange:
    ex = OkxExchange(sim.rest_url, sim.ws_url, **kwargs)  # type: ignore[arg-type]
    await ex.load_markets()
    return ex


def as_tuples(rows: list[RawCandle]) -> list[tuple[float, ...]]:
    return [tuple(r.candle[:7]) for r in rows]


async def test_resolve_symbols_and_funding_targets(sim: Simulator) -> None:
    ex = await connected(sim)
    try:
        insts = ex.resolve(["BTC/USDT", "eth-usdt-swap", "LINK/USDT"]).instruments
        assert [i.inst_id for i in insts] == ["BTC-USDT", "ETH-USDT-SWAP", "LINK-USDT"]
        funding = ex.funding_instruments(insts)
        assert [i.inst_id for i in funding] == ["BTC-USDT-SWAP", "ETH-USDT-SWAP", "LINK-USDT-SWAP"]
        with pytest.raises(BadInput, match=r"did you mean BTC/USDT"):
            ex.resolve(["BTC/USDX"])
        # Every unknown symbol is named at once; one whose data is stored was delisted.
        with pytest.raises(BadInput, match=r"unknown 2 symbols: 'BTC/USDX' .*'FOO/BAR'"):
            ex.resolve(["BTC/USDT", "BTC/USDX", "FOO/BAR"])
        resolution = ex.resolve(
            ["BTC/USDT", "GONE/USDT", "GONE/USDT:USDT"], {"GONE-USDT", "GONE-USDT-SWAP"}
        )
        assert [i.inst_id for i in resolution.instruments] == ["BTC-USDT"]
        assert resolution.gone == ["GONE-USDT", "GONE-USDT-SWAP"]
        with pytest.raises(BadInput, match=r"none of the configured symbols"):
            ex.resolve(["GONE/USDT"], {"GONE-USDT"})
    finally:
        await ex.close()


async def test_markets_keep_the_raw_fields_read_back(sim: Simulator) -> None:
    ex = await connected(sim)
    try:
        markets = ex.client.markets
        assert markets and all(set(m["info"]) <= set(MARKET_INFO_KEYS) for m in markets.values())
        # ... and the ones read back: ccxt's index candles and the index of a perpetual need its
        # instFamily; an instrument its listing time and state.
        # One dict per market, found by symbol and by id.
        assert ex.client.markets_by_id["BTC-USDT-SWAP"] == [markets["BTC/USDT:USDT"]]
        assert ex.client.markets_by_id["BTC-USDT-SWAP"][0] is markets["BTC/USDT:USDT"]
        assert ex.client.baseCurrencies["BTC"] is ex.client.currencies["BTC"]
        assert ex.client.quoteCurrencies["USDT"] is ex.client.currencies["USDT"]
        swap = markets["BTC/USDT:USDT"]["info"]
        assert swap["instFamily"] == "BTC-USDT" and swap["instId"] == "BTC-USDT-SWAP"
        inst = ex.resolve(["BTC/USDT:USDT"]).instruments[0]
        listed = sim.market.instrument("BTC-USDT-SWAP").list_time
        assert listed and inst.list_time == listed and inst.live
        assert await ex.client.fetch_ohlcv("BTC/USDT:USDT", "1m", params={"price": "index"})
    finally:
        await ex.close()


@pytest.mark.parametrize("recent", [False, True])
async def test_page_walk_returns_every_candle_once(sim: Simulator, recent: bool) -> None:
    ex = await connected(sim)
    try:
        inst = ex.resolve(["BTC/USDT:USDT"]).instruments[0]
        end = TF15.floor(sim.now_ms())  # closed candles only
        start = end - (1200 if recent else 5000) * TF15.ms
        got: list[RawCandle] = []
        for page in range(start, end, 300 * TF15.ms):
            got += await ex.fetch_candles(
                inst, TF15, page, min(end, page + 300 * TF15.ms), recent=recent, source="backfill"
            )
        expected = sim.market.candles(inst.inst_id, "15m", start, end)
        assert as_tuples(got) == [tuple(row) for row in expected]
        assert all(r.confirmed for r in got)
        assert len({r.candle.ts for r in got}) == len(got) == (end - start) // TF15.ms
    finally:
        await ex.close()


async def test_in_progress_candle_is_flagged(sim: Simulator) -> None:
    ex = await connected(sim)
    try:
        inst = ex.resolve(["ETH/USDT"]).instruments[0]
        now = sim.now_ms()
        rows = await ex.fetch_candles(
            inst, TF15, TF15.floor(now) - TF15.ms, TF15.floor(now) + TF15.ms,
            recent=True, source="poll",
        )  # fmt: skip
        assert [r.confirmed for r in rows] == [True, False]
    finally:
        await ex.close()


async def test_funding_history_and_current(sim: Simulator) -> None:
    ex = await connected(sim)
    try:
        inst = ex.resolve(["BTC/USDT:USDT"]).instruments[0]
        now = sim.now_ms()
        rates = await ex.fetch_funding_history(inst, now - 60 * DAY_MS, now)
        expected = sim.market.funding_history(inst.inst_id, now - 60 * DAY_MS, now)
        assert [(r.funding_time, r.funding_rate, r.realized_rate) for r in rates] == [
            tuple(e) for e in expected
        ]
        assert len(rates) == 180
        current = await ex.fetch_funding_current(inst)
        assert current.funding_time > now and current.next_funding_time is not None
    finally:
        await ex.close()


async def test_websocket_confirm_flag_is_recovered() -> None:
    async with Simulator(seed=3, speed=60.0, rate_limit_scale=0, push_interval=0.05) as sim:
        ex = await connected(sim)
        seen: list[tuple[str, int, Candle | None]] = []
        funding: list[tuple[str, FundingObservation]] = []
        tf = Timeframe.parse("1m")
        ex.attach_sinks(
            lambda i, t, ts, final: seen.append((i, ts, final)),
            lambda i, o: funding.append((i, o)),
            lambda channel, i, msg: None,
            lambda i, t, raw: None,
        )
        inst = ex.resolve(["BTC/USDT"]).instruments[0]
        perp = ex.resolve(["BTC/USDT:USDT"]).instruments[0]

        async def watch() -> None:
            while True:
                await ex.watch_candles([(inst, tf)])

        async def watch_funding() -> None:
            while True:
                await ex.watch_funding([perp])

        tasks = [asyncio.create_task(watch()), asyncio.create_task(watch_funding())]
        try:
            for _ in range(100):
                await asyncio.sleep(0.05)
                if sum(final is not None for _, _, final in seen) >= 2 and funding:
                    break
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ex.close()
        confirmed = [final for _, _, final in seen if final is not None]
        assert len(confirmed) >= 2
        for candle in confirmed:
            expected = sim.market.candles("BTC-USDT", "1m", candle.ts, candle.ts + tf.ms)
            assert tuple(candle[:7]) == tuple(expected[0])
        assert any(final is None for _, _, final in seen)  # in-progress pushes exist, unconfirmed
        assert funding[0][0] == "BTC-USDT-SWAP"


async def test_ccxt_parses_only_the_pushes_a_watch_waits_for() -> None:
    """Every push reaches the sink; ccxt's own parse (and cache) only sees the pushes of a series
    a watch call waits for: after the batch's first watch, the one series watched."""
    async with Simulator(seed=3, speed=60.0, rate_limit_scale=0, push_interval=0.05) as sim:
        ex = await connected(sim)
        seen: dict[str, set[int]] = {"BTC-USDT": set(), "ETH-USDT": set()}
        ex.attach_sinks(
            lambda i, t, ts, final: seen[i].add(ts),
            lambda i, o: None,
            lambda channel, i, msg: None,
            lambda i, t, raw: None,
        )
        btc, eth = ex.resolve(["BTC/USDT", "ETH/USDT"]).instruments
        tf = Timeframe.parse("1m")
        returns = 0

        async def watch() -> None:
            nonlocal returns
            await ex.watch_candles([(btc, tf), (eth, tf)])  # subscribes both
            while True:
                await ex.watch_candles([(btc, tf)])
                returns += 1

        task = asyncio.create_task(watch())
        try:
            for _ in range(200):
                await asyncio.sleep(0.05)
                if len(seen["ETH-USDT"]) >= 5 and returns >= 4:
                    break
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await ex.close()
        assert returns >= 4  # the watched series' watch keeps returning
        assert len(seen["ETH-USDT"]) >= 5  # the other series' candles all reach the sink
        cached = ex._ws.ohlcvs
        # ccxt follows the watched series (a push between two watch calls may pass it by) ...
        assert cached["BTC/USDT"]["1m"][-1][0] >= sorted(seen["BTC-USDT"])[-2]
        # ... and saw the other's pushes only until the batch's first watch returned.
        eth = cached.get("ETH/USDT", {}).get("1m")
        assert eth is None or eth[-1][0] <= sorted(seen["ETH-USDT"])[1]


async def test_a_frame_that_is_not_json_is_skipped_and_the_stream_goes_on() -> None:
    """A cut-off frame (the simulator's malformed fault) is skipped: the next pushes arrive on
    the same connection, without waiting for the keepalive to drop it (ccxt alone stops reading
    the connection at such a frame)."""
    async with Simulator(seed=7, speed=120.0, rate_limit_scale=0, push_interval=0.05) as sim:
        ex = await connected(sim)
        pushes: list[int] = []
        ex.attach_sinks(
            lambda i, t, ts, final: pushes.append(ts),
            lambda i, o: None,
            lambda channel, i, msg: None,
            lambda i, t, raw: None,
        )
        btc = ex.resolve(["BTC/USDT"]).instruments[0]
        tf = Timeframe.parse("1m")

        async def watch() -> None:
            while True:
                await ex.watch_candles([(btc, tf)])

        async def until(check: Callable[[], bool], seconds: float) -> bool:
            for _ in range(int(seconds / 0.02)):
                if check():
                    return True
                await asyncio.sleep(0.02)
            return check()

        task = asyncio.create_task(watch())
        try:
            assert await until(lambda: len(pushes) >= 3, 10)
            sim.faults.ws_malformed_share = 1.0
            assert await until(lambda: sim.stats.ws_malformed >= 3, 10)
            sim.faults.ws_malformed_share = 0.0
            after = len(pushes)
            # pushes resume at once (the keepalive would take ~20 s to drop a dead reader)
            assert await until(lambda: len(pushes) >= after + 5, 3), sim.stats
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await ex.close()
        assert sim.stats.ws_connections == 1  # the same connection, still read


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ccxt_async.RateLimitExceeded("50011"), ExchangeUnavailable),
        (ccxt_async.ExchangeNotAvailable("503"), ExchangeUnavailable),
        (ccxt_async.RequestTimeout("slow"), ExchangeUnavailable),
        (ccxt_async.NetworkError("closed"), ExchangeUnavailable),
        (ccxt_async.BadResponse("garbled"), ExchangeUnavailable),
        (TimeoutError(), ExchangeUnavailable),
        (ConnectionResetError(), ExchangeUnavailable),
        (ccxt_async.BadSymbol("51001"), ExchangeRejected),
        (ccxt_async.OnMaintenance("50001"), ExchangeMaintenance),
        (ccxt_async.BadRequest("51000"), ExchangeRejected),
        (ccxt_async.ExchangeError("okx {}"), ExchangeRejected),
    ],
)
def test_classify(exc: Exception, kind: type) -> None:
    assert isinstance(classify(exc), kind)


def test_51001_names_the_instrument_it_was_asked_about() -> None:
    gone = classify(ccxt_async.BadSymbol("okx 51001"), "DOT-USDT")
    assert isinstance(gone, InstrumentGone) and gone.inst_id == "DOT-USDT"


async def test_unknown_instrument_is_rejected_and_429_is_retryable(sim: Simulator) -> None:
    ex = await connected(sim)
    try:
        ghost = Instrument("NOPE/USDT", "NOPE-USDT", True)
        with pytest.raises(ExchangeRejected, match="51001"):
            await ex.fetch_candles(ghost, TF15, 0, TF15.ms, recent=True, source="poll")
        sim.faults.rest_429_share = 1.0
        inst = ex.resolve(["BTC/USDT"]).instruments[0]
        with pytest.raises(ExchangeUnavailable):
            await ex.fetch_candles(inst, TF15, 0, TF15.ms, recent=True, source="poll")
    finally:
        await ex.close()
