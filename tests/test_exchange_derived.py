"""Mark and index candles and open interest through the exchange layer (the real ccxt client)
against the simulator over real sockets: pages equal the simulator's own values, value by value."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from okx_collector.errors import InstrumentGone
from okx_collector.exchange import OkxExchange
from okx_collector.exchange_derived import OkxDerived, PriceKind, use_recent_endpoint
from okx_collector.instruments import Instrument
from okx_collector.models import OpenInterest, PriceCandle, RawPriceCandle
from okx_collector.simulator import Simulator
from okx_collector.timeframes import Timeframe

TF1 = Timeframe.parse("1m")
TF5 = Timeframe.parse("5m")
TF1H = Timeframe.parse("1h")


async def derived_client(sim: Simulator, **kwargs: object) -> tuple[OkxExchange, OkxDerived]:
    ex = OkxExchange(sim.rest_url, sim.ws_url, **kwargs)  # type: ignore[arg-type]
    await ex.load_markets()
    return ex, OkxDerived(ex)


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[tuple[OkxExchange, OkxDerived]]:
    ex, derived = await derived_client(sim)
    try:
        yield ex, derived
    finally:
        await ex.close()


def perp(ex: OkxExchange, symbol: str = "BTC/USDT:USDT") -> Instrument:
    return ex.resolve([symbol]).instruments[0]


def expected(sim: Simulator, kind: PriceKind, series: str, tf: str, start: int, end: int) -> list:
    if kind == "mark":
        return sim.derived.mark_candles(series, tf, start, end)
    return sim.derived.index_candles(series, tf, start, end)


def as_tuples(rows: list[RawPriceCandle]) -> list[tuple[float, ...]]:
    return [tuple(r.candle[:5]) for r in rows]


def routes(sim: Simulator, *names: str) -> list[int]:
    return [sim.stats.rest_by_route.get("market/" + n, 0) for n in names]


@pytest.mark.parametrize("kind", ["mark", "index"])
@pytest.mark.parametrize("cap", [0, 37])
async def test_history_pages_equal_the_simulator(
    sim: Simulator, client: tuple[OkxExchange, OkxDerived], kind: PriceKind, cap: int
) -> None:
    ex, derived = client
    inst = perp(ex)
    series = "BTC-USDT-SWAP" if kind == "mark" else "BTC-USDT"
    assert derived.index_id(inst) == "BTC-USDT" == derived.index_id(perp(ex, "BTC/USDT"))
    sim.faults.update({"cap_history_price_candles": cap})
    end = TF1.floor(sim.now_ms()) - 2000 * TF1.ms  # older than the recent endpoints keep
    start = end - 350 * TF1.ms  # 4 pages of 100 (10 of 37 with the cap)
    got = await derived.fetch_price_candles(kind, inst, TF1, start, end, recent=False)
    assert as_tuples(got) == [tuple(r) for r in expected(sim, kind, series, "1m", start, end)]
    assert len(got) == 350 and all(r.confirmed for r in got)
    history = "history-mark-price-candles" if kind == "mark" else "history-index-candles"
    assert routes(sim, history) == [4 if cap == 0 else 10]
    assert sim.stats.rate_limited == 0


@pytest.mark.parametrize("kind", ["mark", "index"])
async def test_history_endpoint_switches_in_for_older_rows(
    sim: Simulator, client: tuple[OkxExchange, OkxDerived], kind: PriceKind
) -> None:
    """A window straddling the recent endpoint's 1,440 rows: the recent endpoint serves what it
    keeps, the history endpoint the rest, and the in-progress candle comes flagged."""
    ex, derived = client
    inst = perp(ex, "ETH/USDT:USDT")
    series = "ETH-USDT-SWAP" if kind == "mark" else "ETH-USDT"
    now = sim.now_ms()
    current = TF1.floor(now)
    start, end = current - 1500 * TF1.ms, current + TF1.ms
    assert not use_recent_endpoint(TF1, start, now)  # ccxt would ask the history endpoint
    got = await derived.fetch_price_candles(kind, inst, TF1, start, end)  # recent=None: auto
    closed = [r for r in got if r.confirmed]
    want = expected(sim, kind, series, "1m", start, current)
    assert as_tuples(closed) == [tuple(r) for r in want]
    assert [r.candle.ts for r in got if not r.confirmed] == [current]
    recent, history = ("mark-price-candles", "history-mark-price-candles")
    if kind == "index":
        recent, history = ("index-candles", "history-index-candles")
    n_recent, n_history = routes(sim, recent, history)
    assert n_recent >= 15 and 1 <= n_history <= 2  # 1,440 rows / 100, then the 61 older ones


async def test_hourly_mark_is_the_aggregate_and_near_last(
    sim: Simulator, client: tuple[OkxExchange, OkxDerived]
) -> None:
    ex, derived = client
    inst = perp(ex)
    end = TF1H.floor(sim.now_ms())
    start = end - 48 * TF1H.ms
    mark = await derived.fetch_price_candles("mark", inst, TF1H, start, end, recent=True)
    index = await derived.fetch_price_candles("index", inst, TF1H, start, end, recent=True)
    last = sim.market.candles(inst.inst_id, "1h", start, end)
    assert len(mark) == len(index) == len(last) == 48
    for m, i, t in zip(mark, index, last, strict=True):
        assert abs(m.candle.close / t[4] - 1) < 2e-3  # a mark close near the last close
        assert abs(i.candle.close / m.candle.close - 1) < 3e-3  # an index near the mark
    minutes = await derived.fetch_price_candles("mark", inst, TF1, start, start + TF1H.ms)
    first = mark[0].candle
    assert first.open == minutes[0].candle.open and first.close == minutes[-1].candle.close
    assert first.high == max(r.candle.high for r in minutes)
    assert first.low == min(r.candle.low for r in minutes)


@pytest.mark.parametrize("cap", [0, 30])
async def test_open_interest_now_and_history(
    sim: Simulator, client: tuple[OkxExchange, OkxDerived], cap: int
) -> None:
    ex, derived = client
    inst = perp(ex)
    sim.faults.update({"cap_open_interest_history": cap})
    now_oi = await derived.fetch_open_interest(inst)
    assert now_oi.source == "poll"
    assert tuple(now_oi[:4]) == sim.derived.open_interest_at(inst.inst_id, now_oi.ts)
    assert now_oi.oi_coin == pytest.approx(now_oi.oi_contracts * 0.01)  # ctVal 0.01 BTC
    end = TF5.floor(sim.now_ms())
    start = end - 250 * TF5.ms
    got = await derived.fetch_open_interest_history(inst, TF5, start, end)
    want = sim.derived.open_interest_history(inst.inst_id, "5m", start, end)
    assert [tuple(r[:4]) for r in got] == want
    assert len(got) == 250
    assert sim.stats.rest_by_route["rubik/stat/contracts/open-interest-history"] == (
        3 if cap == 0 else 9
    )
    # OKX keeps the latest 1,440 entries: an older window comes back empty, after one request.
    before = sim.stats.rest_by_route["rubik/stat/contracts/open-interest-history"]
    old = await derived.fetch_open_interest_history(
        inst, TF5, end - 3000 * TF5.ms, end - 1500 * TF5.ms
    )
    assert old == []
    assert sim.stats.rest_by_route["rubik/stat/contracts/open-interest-history"] == before + 1


async def test_delisted_perpetual_is_gone(
    sim: Simulator, client: tuple[OkxExchange, OkxDerived]
) -> None:
    ex, derived = client
    inst = perp(ex, "DOT/USDT:USDT")
    sim.delist(inst.inst_id)
    end = TF1.floor(sim.now_ms())
    with pytest.raises(InstrumentGone):
        await derived.fetch_price_candles("mark", inst, TF1, end - 10 * TF1.ms, end)
    with pytest.raises(InstrumentGone):
        await derived.fetch_open_interest(inst)
    # The index lives on while its spot pair is listed.
    rows = await derived.fetch_price_candles("index", inst, TF1, end - 10 * TF1.ms, end)
    assert len(rows) == 10


async def test_pacing_keeps_each_endpoint_under_its_limit() -> None:
    """Both sides at half of OKX's limits: history-index-candles allows 5 requests per 2 s;
    12 pages in a row are paced, none refused."""
    async with Simulator(seed=5, rate_limit_scale=0.5) as sim:
        ex, derived = await derived_client(sim, rate_limit_scale=0.5)
        try:
            inst = perp(ex)
            sim.faults.update({"cap_history_price_candles": 10})
            end = TF1.floor(sim.now_ms()) - 3000 * TF1.ms
            got = await derived.fetch_price_candles(
                "index", inst, TF1, end - 120 * TF1.ms, end, recent=False
            )
            assert len(got) == 120
            assert sim.stats.rest_by_route["market/history-index-candles"] == 12
            assert sim.stats.rate_limited == 0
        finally:
            await ex.close()


async def test_websocket_pushes_with_confirm_and_open_interest() -> None:
    async with Simulator(seed=3, speed=60.0, rate_limit_scale=0, push_interval=0.05) as sim:
        ex, derived = await derived_client(sim)
        seen: list[tuple[str, str, int, PriceCandle | None]] = []
        interest: list[tuple[str, OpenInterest]] = []
        derived.attach_sinks(
            lambda kind, series, tf, ts, final: seen.append((kind, series, ts, final)),
            lambda inst_id, oi: interest.append((inst_id, oi)),
            lambda i, t, raw: None,
        )
        inst = perp(ex)

        async def watch(kind: PriceKind) -> None:
            while True:
                await derived.watch_price_candles(kind, [(inst, TF1)])

        async def watch_oi() -> None:
            while True:
                await derived.watch_open_interest([inst])

        tasks = [asyncio.create_task(c) for c in (watch("mark"), watch("index"), watch_oi())]
        try:
            for _ in range(150):
                await asyncio.sleep(0.05)
                finals = {k for k, _, _, final in seen if final is not None}
                if finals == {"mark", "index"} and len(interest) >= 3:
                    break
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ex.close()
        for kind, series, ts, final in seen:
            assert (kind, series) in {("mark", "BTC-USDT-SWAP"), ("index", "BTC-USDT")}
            if final is not None:
                assert final.source == "ws" and final.ts == ts
                assert tuple(final[:5]) == tuple(expected(sim, kind, series, "1m", ts, ts + 1)[0])
        assert {k for k, _, _, final in seen if final is not None} == {"mark", "index"}
        assert any(final is None for _, _, _, final in seen)  # in-progress pushes, unconfirmed
        assert len(interest) >= 3
        stamps = [oi.ts for _, oi in interest]
        assert stamps == sorted(set(stamps))  # one push per change, in order
        for inst_id, oi in interest:
            assert inst_id == "BTC-USDT-SWAP" and oi.source == "ws"
            assert oi.ts % 3000 == 0  # the 3 s step at which it changed
            assert tuple(oi[:4]) == sim.derived.open_interest_at(inst_id, oi.ts)


async def test_refusal_names_its_subscription_and_a_drop_resubscribes() -> None:
    """A delisted perpetual's mark channel is refused (60018) to the refusal sink without
    failing the batch; after the simulator drops every connection, the next watch reconnects and
    subscribes again."""
    async with Simulator(seed=3, rate_limit_scale=0, push_interval=0.05) as sim:
        ex, derived = await derived_client(sim)
        refused: list[tuple[str, str]] = []
        ex.attach_sinks(
            lambda i, t, ts, final: None,
            lambda i, o: None,
            lambda channel, inst_id, msg: refused.append((channel, inst_id)),
            lambda i, t, raw: None,
        )
        pushes: list[tuple[str, int]] = []
        derived.attach_sinks(
            lambda kind, series, tf, ts, final: pushes.append((series, ts)),
            lambda inst_id, oi: None,
            lambda i, t, raw: None,
        )
        btc, dot = perp(ex), perp(ex, "DOT/USDT:USDT")
        sim.delist(dot.inst_id)
        errors: list[Exception] = []

        async def watch() -> None:
            while True:
                try:
                    await derived.watch_price_candles("mark", [(btc, TF1), (dot, TF1)])
                except Exception as exc:  # the drop: classified, then watched again
                    errors.append(exc)

        task = asyncio.create_task(watch())
        try:
            for _ in range(100):
                await asyncio.sleep(0.05)
                if refused and len(pushes) >= 3:
                    break
            # Each watch of the batch asks for it again (ccxt forgot it): the caller's live code
            # leaves refused instruments out of its next batches, as for trade candles.
            assert set(refused) == {("mark-price-candle1m", "DOT-USDT-SWAP")}
            assert {series for series, _ in pushes} == {"BTC-USDT-SWAP"}
            assert await sim.drop_connections() == 1
            seen = len(pushes)
            for _ in range(100):
                await asyncio.sleep(0.05)
                if len(pushes) >= seen + 3:
                    break
            assert len(pushes) >= seen + 3  # pushing again on a new connection
            assert sim.stats.ws_connections == 2
            assert any("1001" in str(e) for e in errors)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await ex.close()
