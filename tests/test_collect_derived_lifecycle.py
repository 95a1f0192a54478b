"""Live mark, index and open interest on bad days, through the real ccxt client and the simulator:
a refused subscription falls back to polling for that series alone, a listing gains its series,
a delisting stops them with one warning. Stored values equal the simulator's, value by value."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from okx_collector.config import Settings
from okx_collector.simulator import Simulator
from okx_collector.store import Store
from okx_collector.timeframes import MINUTE_MS, Timeframe
from tests.clock_helpers import logged, until, until_holds
from tests.collect_helpers import iso
from tests.test_collect_faults import run_with

MakeSettings = Callable[..., Settings]
SPEED = 120.0  # a 1m candle closes every 0.5 s
TF1 = Timeframe.parse("1m")
PRICE_COLUMNS = ("ts", "open", "high", "low", "close")


def derived_settings(
    make_settings: MakeSettings, sim: Simulator, symbols: str, since: int, **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        "symbols": symbols, "timeframes": "1m", "since": iso(since), "mode": "auto",
        "poll_interval": 0.3, "heartbeat": 1, "series": "trade,mark,index,oi", "funding": False,
    }  # fmt: skip
    values.update(extra)
    return make_settings(sim, **values)


def price_rows(store: Store, price: str, sid: str) -> tuple[list[tuple[Any, ...]], list[str]]:
    table = store.read_price_candles(price, sid, TF1)  # type: ignore[arg-type]
    got = list(zip(*(table.column(c).to_pylist() for c in PRICE_COLUMNS), strict=True))
    return got, table.column("source").to_pylist()


def assert_price_exact(
    store: Store, sim: Simulator, price: str, sid: str, first: int, min_last: int
) -> list[str]:
    """Stored == the simulator's candles from `first` to the last stored (>= `min_last`);
    returns the sources."""
    got, sources = price_rows(store, price, sid)
    assert got, (price, sid)
    assert got[0][0] == first, (price, sid, got[0][0], first)
    assert got[-1][0] >= min_last, (price, sid, got[-1][0], min_last)
    helper = sim.derived.mark_candles if price == "mark" else sim.derived.index_candles
    assert got == [tuple(r) for r in helper(sid, "1m", first, got[-1][0] + TF1.ms)], (price, sid)
    return sources


def assert_oi_exact(store: Store, sim: Simulator, perp: str) -> list[tuple[int, str]]:
    """Every stored open-interest row is the simulator's value in force at its bar close;
    returns (ts, source) of each."""
    table = store.read_open_interest(perp, TF1)
    out = []
    for ts, contracts, coin, source in zip(
        *(table.column(c).to_pylist() for c in ("ts", "oi_contracts", "oi_coin", "source")),
        strict=True,
    ):
        assert ts % TF1.ms == 0
        want = sim.derived.open_interest_at(perp, ts)
        assert (contracts, coin) == (want[1], want[2]), (perp, ts, source)
        out.append((ts, source))
    return out


async def test_a_refused_subscription_polls_that_series_and_streams_the_others(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async with Simulator(seed=41, speed=SPEED, rate_limit_scale=0, push_interval=0.01) as sim:
        # OKX answers 60018 to these three, though the instruments are listed.
        sim.refuse_derived("mark-price-candle", "ETH-USDT-SWAP")
        sim.refuse_derived("index-candle", "BTC-USDT")
        sim.refuse_derived("open-interest", "BTC-USDT-SWAP")
        since = (sim.now_ms() - 10 * MINUTE_MS) // 1000 * 1000
        settings = derived_settings(
            make_settings, sim, "BTC/USDT:USDT,ETH/USDT:USDT", since, mode="ws"
        )
        store = Store(settings.data_dir)
        live = TF1.ceil(sim.now_ms()) + 2 * TF1.ms  # closed after the collector was live
        first = TF1.ceil(since)

        def served() -> None:
            for price, sid, refused in (
                ("mark", "ETH-USDT-SWAP", True),
                ("mark", "BTC-USDT-SWAP", False),
                ("index", "BTC-USDT", True),
                ("index", "ETH-USDT", False),
            ):
                sources = assert_price_exact(store, sim, price, sid, first, live + 2 * TF1.ms)
                got, _ = price_rows(store, price, sid)
                after = {s for (ts, *_), s in zip(got, sources, strict=True) if ts >= live}
                # The refused series over REST only; the others still on the websocket.
                if refused:
                    assert after == {"poll"}, (price, sid, after)
                else:
                    assert "ws" in after, (price, sid, after)
            oi = {p: assert_oi_exact(store, sim, p) for p in ("BTC-USDT-SWAP", "ETH-USDT-SWAP")}
            btc, eth = oi["BTC-USDT-SWAP"], oi["ETH-USDT-SWAP"]
            assert {s for ts, s in btc if ts >= live} == {"poll"}, btc
            assert "ws" in {s for ts, s in eth if ts >= live}, eth
            # Each refused once (not asked for again in a loop).
            assert sim.stats.ws_errors == 3

        with caplog.at_level(logging.INFO, logger="okx_collector"):
            await run_with(settings, lambda: until_holds(served, "every series served"))
        served()
        # One warning each.
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert sorted(w.split(" subscription")[0] for w in warnings if "refused" in w) == [
            "OKX refused the index-candle1m",
            "OKX refused the mark-price-candle1m",
            "OKX refused the open-interest",
        ], warnings


async def test_a_listing_gains_its_mark_index_and_open_interest(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async with Simulator(seed=42, speed=SPEED, rate_limit_scale=0, push_interval=0.01) as sim:
        since = (sim.now_ms() - 10 * MINUTE_MS) // 1000 * 1000
        settings = derived_settings(make_settings, sim, "swap:USDT", since)
        store = Store(settings.data_dir)
        listed: list[int] = []

        def joined() -> None:
            first = TF1.ceil(listed[0])  # its first candle: the bar after its listing
            target = first + 4 * TF1.ms
            for price, sid in (("mark", "NEW-USDT-SWAP"), ("index", "NEW-USDT")):
                sources = assert_price_exact(store, sim, price, sid, first, target)
                assert "ws" in sources, (price, sid, sources)  # streamed once it joined
            oi = assert_oi_exact(store, sim, "NEW-USDT-SWAP")
            assert len(oi) >= 3 and oi[0][0] >= first, oi
            # The others went on meanwhile.
            assert_price_exact(store, sim, "mark", "BTC-USDT-SWAP", TF1.ceil(since), target)

        async def script() -> None:
            # Listed once the collector runs (before, it would be in the start's selection).
            await until(logged(caplog, "funding streams in"), "collecting live")
            listed.append(sim.list_instrument("NEW-USDT-SWAP"))
            await until_holds(joined, "the listing's series stored")

        with caplog.at_level(logging.INFO, logger="okx_collector"):
            collector = await run_with(settings, script, refresh_seconds=0.5)
        assert collector.counters.listed == 1
        joined()


async def test_a_delisting_stops_its_series_with_one_warning(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """DOT's perpetual and ADA's are delisted; ADA's spot pair is collected too, so the ADA-USDT
    index goes on, DOT-USDT's stops with its perpetual."""
    async with Simulator(seed=43, speed=SPEED, rate_limit_scale=0, push_interval=0.01) as sim:
        since = (sim.now_ms() - 10 * MINUTE_MS) // 1000 * 1000
        symbols = "BTC/USDT:USDT,DOT/USDT:USDT,ADA/USDT:USDT,ADA/USDT"
        settings = derived_settings(make_settings, sim, symbols, since)
        store = Store(settings.data_dir)
        delisted: dict[str, int] = {}
        first = TF1.ceil(since)

        def stopped() -> None:
            warnings = [
                r.getMessage()
                for r in list(caplog.records)
                if r.levelno >= logging.WARNING and "mark, index and oi" in r.getMessage()
            ]
            assert sorted(w.split(":")[0] for w in warnings) == ["ADA-USDT-SWAP", "DOT-USDT-SWAP"]
            # The delisted series keep what was stored, exact, and nothing after their delisting.
            for price, sid, perp in (
                ("mark", "DOT-USDT-SWAP", "DOT-USDT-SWAP"),
                ("index", "DOT-USDT", "DOT-USDT-SWAP"),
                ("mark", "ADA-USDT-SWAP", "ADA-USDT-SWAP"),
            ):
                gone = delisted[perp]
                assert_price_exact(store, sim, price, sid, first, gone - 3 * TF1.ms)
                got, _ = price_rows(store, price, sid)
                assert got[-1][0] <= gone, (price, sid)
            for perp, gone in delisted.items():
                assert all(ts <= gone + TF1.ms for ts, _ in assert_oi_exact(store, sim, perp))
            # The others go on, exact, on the websocket: BTC's, and the ADA-USDT index (its
            # spot pair).
            target = max(delisted.values()) + 4 * TF1.ms
            for price, sid in (("mark", "BTC-USDT-SWAP"), ("index", "BTC-USDT"),
                               ("index", "ADA-USDT")):  # fmt: skip
                sources = assert_price_exact(store, sim, price, sid, first, target)
                assert "ws" in sources, (price, sid)
            btc_oi = assert_oi_exact(store, sim, "BTC-USDT-SWAP")
            assert any(ts > delisted["DOT-USDT-SWAP"] + 2 * TF1.ms for ts, _ in btc_oi), btc_oi

        def streaming() -> None:
            for price, sid in (("mark", "DOT-USDT-SWAP"), ("index", "DOT-USDT"),
                               ("mark", "ADA-USDT-SWAP")):  # fmt: skip
                assert "ws" in price_rows(store, price, sid)[1], (price, sid)

        async def script() -> None:
            # Delisted once their series stream (caught up, subscribed).
            await until_holds(streaming, "the series to delist streaming")
            for perp in ("DOT-USDT-SWAP", "ADA-USDT-SWAP"):
                delisted[perp] = sim.delist(perp)
            await sim.drop_connections()  # the resubscriptions name them too: refused (60018)
            await until_holds(stopped, "the delisted series stopped, the others going on")

        with caplog.at_level(logging.INFO, logger="okx_collector"):
            collector = await run_with(settings, script, refresh_seconds=0.5)
        assert {"DOT-USDT-SWAP", "ADA-USDT-SWAP"} <= set(collector.retired)
        stopped()
