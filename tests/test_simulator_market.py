"""The simulator's pure market: determinism, aggregation, realism, exact decimals, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from okx_collector.simulator import Market
from okx_collector.simulator.bars import BARS, CCXT_TIMEFRAMES, resolve_bar
from okx_collector.simulator.instruments import LIST_TIME_MS, Dec, default_instruments, fmt_units
from okx_collector.simulator.live import LiveCandle
from okx_collector.simulator.path import PathParams, minute_bars
from sim_helpers import DAY, HOUR, MINUTE, START_MS

T0 = START_MS - START_MS % DAY - 30 * DAY  # a UTC midnight a month before START_MS


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(seed=7)


def test_fmt_units_and_steps() -> None:
    assert fmt_units(433000, 1) == "43300"
    assert fmt_units(12, 4) == "0.0012"
    assert fmt_units(-5, 3) == "-0.005"
    assert fmt_units(7, 0) == "7"
    assert fmt_units(3, -2) == "300"
    assert Dec.parse("0.00000001") == Dec(1, 8)
    assert Dec.parse("100") == Dec(100, 0)
    assert Dec.parse("0.5").fmt(3) == "1.5"
    assert str(Dec.parse("0.1") * Dec.parse("0.01")) == "0.001"


def test_instrument_list() -> None:
    ids = [i.inst_id for i in default_instruments(2)]
    assert ids[:2] == ["BTC-USDT", "BTC-USDT-SWAP"]
    assert {"LINK-USDT-SWAP", "SIM0001-USDT", "SIM0002-USDT-SWAP"} <= set(ids)
    btc_swap = default_instruments()[1].okx_row()
    assert (btc_swap["tickSz"], btc_swap["lotSz"], btc_swap["ctVal"]) == ("0.1", "0.1", "0.01")
    assert (btc_swap["uly"], btc_swap["settleCcy"], btc_swap["ctType"]) == (
        "BTC-USDT",
        "USDT",
        "linear",
    )
    for inst in default_instruments(30):
        assert float(inst.tick) > 0 and float(inst.lot) > 0 and inst.list_time == LIST_TIME_MS


def test_bars_alignment() -> None:
    ts = 1_768_435_650_000  # 2026-01-15T00:07:30Z, a Thursday
    assert BARS["15m"].floor(ts) == ts - 7 * MINUTE - 30_000
    assert BARS["1Dutc"].floor(ts) == ts - 7 * MINUTE - 30_000
    assert BARS["1D"].floor(ts) == ts - 7 * MINUTE - 30_000 - 8 * HOUR  # 00:00 UTC+8
    assert BARS["1Wutc"].floor(ts) == ts - 7 * MINUTE - 30_000 - 3 * DAY  # Monday 00:00 UTC
    assert BARS["1W"].floor(ts) == ts - 7 * MINUTE - 30_000 - 3 * DAY - 8 * HOUR
    assert resolve_bar("1d") is BARS["1Dutc"] and resolve_bar("1D") is BARS["1D"]
    assert set(CCXT_TIMEFRAMES.values()) <= set(BARS)
    with pytest.raises(ValueError, match="unknown timeframe"):
        resolve_bar("7m")


def test_same_seed_same_history_other_seed_differs(market: Market) -> None:
    a = market.candles("BTC-USDT", "15m", T0, T0 + DAY)
    assert a == Market(seed=7, extra_instruments=3).candles("BTC-USDT", "15m", T0, T0 + DAY)
    assert a != Market(seed=8).candles("BTC-USDT", "15m", T0, T0 + DAY)
    assert len(a) == 96 and [c[0] for c in a] == list(range(T0, T0 + DAY, 15 * MINUTE))


def test_values_do_not_depend_on_the_range_asked(market: Market) -> None:
    whole = market.candles("ETH-USDT-SWAP", "1m", T0, T0 + 3000 * MINUTE)
    parts = market.candles("ETH-USDT-SWAP", "1m", T0, T0 + 1234 * MINUTE) + market.candles(
        "ETH-USDT-SWAP", "1m", T0 + 1234 * MINUTE, T0 + 3000 * MINUTE
    )
    assert whole == parts
    # and not on which other instruments share the vectorised batch
    params = PathParams.build(7, default_instruments(5))
    both = minute_bars(params.rows([0, 3, 12]), T0 // MINUTE, 50)
    alone = minute_bars(params.rows([3]), T0 // MINUTE, 50)
    assert np.array_equal(both.close[1], alone.close[0])


@pytest.mark.parametrize(
    ("small", "big", "ratio"),
    [("15m", "1h", 4), ("1h", "4h", 4), ("1m", "15m", 15), ("1h", "1d", 24)],
)
def test_every_timeframe_aggregates_the_smaller_one(
    market: Market, small: str, big: str, ratio: int
) -> None:
    end = T0 + 2 * DAY
    fine = market.candles("LINK-USDT-SWAP", small, T0, end)
    coarse = market.candles("LINK-USDT-SWAP", big, T0, end)
    assert len(fine) == ratio * len(coarse)
    for i, c in enumerate(coarse):
        part = fine[i * ratio : (i + 1) * ratio]
        assert c[0] == part[0][0]
        assert c[1] == part[0][1] and c[4] == part[-1][4]
        assert c[2] == max(p[2] for p in part) and c[3] == min(p[3] for p in part)
        assert c[5] == pytest.approx(sum(p[5] for p in part), rel=1e-12)
        assert c[6] == pytest.approx(sum(p[6] for p in part), rel=1e-12)


def test_candles_are_sane_and_on_the_grid(market: Market) -> None:
    for inst in market.instruments():
        rows = market.candles(inst.inst_id, "5m", T0, T0 + DAY)
        tick = float(inst.tick)
        for _, o, h, lo, c, vol, quote in rows:
            assert lo <= min(o, c) <= max(o, c) <= h and lo > 0
            for price in (o, h, lo, c):
                assert abs(price / tick - round(price / tick)) < 1e-6
            assert vol >= 0 and lo * vol * 0.999 <= quote <= h * vol * 1.001
        closes = [r[4] for r in rows]
        assert [r[1] for r in rows[1:]] == closes[:-1]  # each open is the previous close


def test_volatility_clusters_and_volumes_vary(market: Market) -> None:
    rows = market.candles("BTC-USDT", "1h", T0 - 200 * DAY, T0)
    closes = np.array([r[4] for r in rows])
    moves = np.abs(np.diff(np.log(closes)))
    assert np.corrcoef(moves[1:], moves[:-1])[0, 1] > 0.05
    yearly = np.std(np.diff(np.log(closes))) * np.sqrt(24 * 365)
    assert 0.2 < yearly < 1.5
    volumes = np.array([r[5] for r in rows])
    assert volumes.std() / volumes.mean() > 0.2


def test_history_starts_at_list_time(market: Market) -> None:
    rows = market.candles("DOT-USDT", "1d", LIST_TIME_MS - 5 * DAY, LIST_TIME_MS + 3 * DAY)
    assert [r[0] for r in rows] == [LIST_TIME_MS + i * DAY for i in range(3)]
    assert market.candles("DOT-USDT", "1w", LIST_TIME_MS, LIST_TIME_MS + 7 * DAY)[0][0] > (
        LIST_TIME_MS
    )  # the first whole week opens on the Monday after listTime


def test_now_ms_keeps_only_closed_candles(market: Market) -> None:
    now = T0 + 10 * HOUR + 5 * MINUTE
    rows = market.candles("BTC-USDT", "1h", T0, T0 + DAY, now_ms=now)
    assert rows[-1][0] == T0 + 9 * HOUR


def test_live_candle_grows_into_the_closed_one(market: Market) -> None:
    bar = resolve_bar("15m")
    open_ts = T0 + 3 * HOUR
    live: LiveCandle = market.live([("ADA-USDT", bar, open_ts)])[0]
    final = market.closed_raw("ADA-USDT", bar, open_ts, 1)[0][1:]
    assert live.final() == final
    assert live.at(open_ts + bar.ms) == final and live.close_ts == open_ts + bar.ms
    volumes = []
    for seconds in range(0, 900, 7):
        o, h, lo, c, vol, value = live.at(open_ts + seconds * 1000)
        assert o == final[0] and final[2] <= lo <= min(o, c) <= max(o, c) <= h <= final[1]
        assert vol <= final[4] and value <= final[5]
        volumes.append(vol)
    assert volumes == sorted(volumes) and volumes[-1] < final[4]


def test_funding_settled_realized_and_estimate(market: Market) -> None:
    hist = market.funding_history("BTC-USDT-SWAP", T0, T0 + 3 * DAY)
    assert [h[0] for h in hist] == list(range(T0, T0 + 3 * DAY, 8 * HOUR))
    assert all(r != z and abs(r - z) < 1e-5 for _, r, z in hist)
    assert all(abs(r) <= 0.00375 for _, r, _ in hist)
    link = market.funding_history("LINK-USDT-SWAP", T0, T0 + DAY)
    assert len(link) == 6  # every 4 h
    settle = T0 + DAY
    settled = market.funding_history("BTC-USDT-SWAP", settle, settle + 1)[0][1]
    gaps = []
    for before in (8 * HOUR - 1, 4 * HOUR, HOUR, MINUTE, 1000):
        funding_time, estimate, next_time = market.funding_current("BTC-USDT-SWAP", settle - before)
        assert (funding_time, next_time) == (settle, settle + 8 * HOUR)
        gaps.append(abs(estimate - settled))
    assert gaps[-1] < 1e-8 and max(gaps) > gaps[-1]


def test_history_page_is_fast(market: Market) -> None:
    bar = resolve_bar("15m")
    market.closed_raw("BTC-USDT", bar, T0, 300)  # warm up
    started = time.perf_counter()
    for i in range(20):
        market.closed_raw("BTC-USDT", bar, T0 - i * 300 * bar.ms, 300)
    per_page = (time.perf_counter() - started) / 20
    print(f"300-row 15m page: {per_page * 1000:.2f} ms")
    assert per_page < 0.05  # generous for slow CI; typically ~2 ms
