"""Instrument lifecycle and bad days while collecting, through the real ccxt client: a delisting,
a refused subscription, maintenance. The process stays up, the healthy series stay exact and on
the websocket, the delisted one keeps its data and is recorded as delisted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from okx_collector.config import Settings, parse_time_spec
from okx_collector.errors import BadInput, ExchangeRejected
from okx_collector.exchange import OkxExchange
from okx_collector.live.clock import ExchangeClock
from okx_collector.live.lifecycle import MIN_CHECK_GAP_SECONDS, REFRESH_SECONDS, InstrumentWatch
from okx_collector.localclock import SteppedClock, settle
from okx_collector.okx_ws import parse_refusal
from okx_collector.qlib_export import export_qlib
from okx_collector.qlib_export.calendar import format_time
from okx_collector.simulator import Simulator
from okx_collector.status import collect_status
from okx_collector.store import Store
from okx_collector.store.lifecycle import read_delisted
from okx_collector.timeframes import MINUTE_MS, Timeframe
from tests.clock_helpers import local_time, logged, stepped_run, until, until_holds
from tests.collect_helpers import assert_exact, iso, stored_rows
from tests.test_collect_faults import run_with

MakeSettings = Callable[..., Settings]
SPEED = 120.0  # a 1m candle closes every 0.5 s of real time
TF1 = Timeframe.parse("1m")


def live_settings(
    make_settings: MakeSettings, sim: Simulator, symbols: str, **extra: object
) -> Settings:
    values: dict[str, object] = {
        "symbols": symbols, "timeframes": "1m", "since": iso(sim.now_ms() - 10 * MINUTE_MS),
        "mode": "auto", "poll_interval": 0.3, "heartbeat": 0.5, "funding": False,
    }  # fmt: skip
    values.update(extra)
    return make_settings(sim, **values)


def live(
    caplog: pytest.LogCaptureFixture, sim: Simulator, subscriptions: int = 1
) -> Callable[[], bool]:
    """A condition: the collector has gone live (after its catch-up) and subscribed."""
    started = logged(caplog, "funding streams in")
    return lambda: started() and sim.stats.ws_subscriptions >= subscriptions


def stored_to(store: Store, inst_ids: Iterable[str], last: int) -> Callable[[], None]:
    """A check: each series has stored its candle opening at `last` (or a later one)."""

    def check() -> None:
        for inst_id in inst_ids:
            newest = store.last_candle_ts(inst_id, TF1)
            assert newest is not None and newest >= last, (inst_id, newest, last)

    return check


def ws_share_after(store: Store, inst_id: str, after: int) -> float:
    sources = [r for r in zip(store.read_candles(inst_id, TF1).column("ts").to_pylist(),
                              store.read_candles(inst_id, TF1).column("source").to_pylist(),
                              strict=True) if r[0] >= after]  # fmt: skip
    assert len(sources) >= 5, f"{inst_id}: only {len(sources)} candles after the storm"
    return sum(1 for _, source in sources if source == "ws") / len(sources)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"event": "error", "code": "60018",
          "msg": "Wrong URL or channel:candle1m,instId:DOT-USDT doesn't exist. Please use the "
                 "correct URL, channel and parameters referring to API document.", "connId": "a"},
         ("candle1m", "DOT-USDT")),
        ({"event": "error", "code": "60018", "msg": "channel:funding-rate,instId:X-USDT-SWAP "
          "doesn't exist"}, ("funding-rate", "X-USDT-SWAP")),
        ({"event": "error", "code": "60012", "msg": "Illegal request: {}"}, None),
        ({"event": "error", "code": "60018", "msg": "something else"}, None),
        ({"event": "subscribe", "arg": {"channel": "candle1m", "instId": "BTC-USDT"}}, None),
        ("pong", None),
    ],
)  # fmt: skip
def test_parse_refusal(frame: object, expected: tuple[str, str] | None) -> None:
    assert parse_refusal(frame) == expected


def no_delays() -> Iterator[float]:
    while True:
        yield 0.0


class Reloads:
    """The instrument-list reload the watch calls: counts calls, fails when told to."""

    def __init__(self) -> None:
        self.calls = 0
        self.lists: list[set[str]] = []  # what `on_list` was handed
        self.failing = False

    async def reload(self) -> set[str]:
        self.calls += 1
        if self.failing:
            raise ExchangeRejected("refused (test)")
        return {"BTC-USDT"}

    async def on_list(self, listed: set[str]) -> None:
        self.lists.append(listed)


@asynccontextmanager
async def watching(
    refresh_seconds: float = REFRESH_SECONDS,
) -> AsyncIterator[tuple[InstrumentWatch, Reloads, SteppedClock]]:
    clock, reloads = SteppedClock(), Reloads()
    watch = InstrumentWatch(reloads.reload, reloads.on_list, refresh_seconds=refresh_seconds,
                            delays=no_delays, local=clock)  # fmt: skip
    # `check_soon` wakes it to see `stop`
    async with stepped_run(
        clock, watch.run, wake=watch.check_soon, step=MIN_CHECK_GAP_SECONDS, within=1.0
    ):
        yield watch, reloads, clock


async def test_the_instrument_list_is_reloaded_every_refresh_period() -> None:
    async with watching() as (watch, reloads, clock):
        assert reloads.calls == 0  # the session loaded it just before
        await clock.advance(REFRESH_SECONDS - 0.001)
        assert reloads.calls == 0
        await clock.advance(0.001)
        assert reloads.calls == 1 and watch.checks == 1
        await clock.advance(3 * REFRESH_SECONDS)
        assert reloads.calls == 4 and len(reloads.lists) == 4


async def test_asked_for_reloads_come_at_once_then_spaced_out() -> None:
    """A burst of refusals (a batch of 100) costs one reload, and a second one asked for right
    after (the confirmation of a delisting) waits MIN_CHECK_GAP_SECONDS, not a refresh period."""
    async with watching() as (watch, reloads, clock):
        for _ in range(100):
            watch.check_soon()
        await settle()
        assert reloads.calls == 1
        watch.check_soon()
        await clock.advance(MIN_CHECK_GAP_SECONDS - 0.001)
        assert reloads.calls == 1
        await clock.advance(0.001)
        assert reloads.calls == 2
        await clock.advance(REFRESH_SECONDS)  # the periodic one keeps its schedule
        assert reloads.calls == 3


async def test_a_failed_reload_is_tried_again_at_the_next_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with watching(refresh_seconds=60.0) as (watch, reloads, clock):
        reloads.failing = True
        with caplog.at_level(logging.WARNING):
            await clock.advance(60.0)
        assert reloads.calls == 1 and watch.checks == 0 and reloads.lists == []
        assert any("not reloaded" in r.getMessage() for r in caplog.records)
        reloads.failing = False
        await clock.advance(60.0)
        assert reloads.calls == 2 and watch.checks == 1


async def test_a_refused_subscription_affects_only_its_instrument() -> None:
    """ccxt would reject every watch of the connection on a 60018 (the frame has no id); the
    refusal goes to the sink naming its instrument, and the others' watch goes on."""
    async with Simulator(seed=30, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        ex = OkxExchange(sim.rest_url, sim.ws_url)
        try:
            await ex.load_markets()
            btc, dot = ex.listed["BTC-USDT"], ex.listed["DOT-USDT"]
            refused: list[tuple[str, str]] = []
            pushes: list[str] = []
            ex.attach_sinks(
                lambda inst_id, tf, ts, final: pushes.append(inst_id),
                lambda inst_id, obs: None,
                lambda channel, inst_id, msg: refused.append((channel, inst_id)),
                lambda inst_id, tf, raw: None,
            )
            sim.delist("DOT-USDT")  # the collector's markets still have it: it subscribes
            for _ in range(5):
                await asyncio.wait_for(ex.watch_candles([(btc, TF1), (dot, TF1)]), 5)
            # Each watch naming DOT asks again (the refusal was forgotten), each refusal names it.
            assert refused and set(refused) == {("candle1m", "DOT-USDT")}
            assert pushes and set(pushes) == {"BTC-USDT"}
        finally:
            await ex.close()


async def test_a_delisting_mid_run_retires_only_that_instrument(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        Simulator(seed=31, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim,
        local_time() as clock,
    ):
        settings = live_settings(make_settings, sim, "BTC/USDT,ETH/USDT,DOT/USDT:USDT",
                                 funding=True)  # fmt: skip
        since = parse_time_spec(settings.since or "", 0)  # as the collector reads it
        store = Store(settings.data_dir)
        delisted: list[int] = []
        survivors = ("BTC-USDT", "ETH-USDT")

        async def script() -> None:
            await until(live(caplog, sim, 3), "collecting live")
            delisted.append(sim.delist("DOT-USDT-SWAP"))
            await sim.drop_connections()  # the resubscription names DOT too: refused (60018)
            # Retired once a second reload, spaced MIN_CHECK_GAP_SECONDS after the first, still
            # misses it: that spacing is stepped, not waited for.
            await until(logged(caplog, "DOT-USDT-SWAP is no longer listed"), "DOT retired",
                        clock=clock, step=0.1)  # fmt: skip
            # Candles enough after the storm for the websocket share, stored (not timed).
            await until_holds(stored_to(store, survivors, delisted[0] + 14 * TF1.ms), "14 bars")

        with caplog.at_level(logging.INFO):
            collector = await run_with(settings, script, local=clock, clock=ExchangeClock())
        assert "DOT-USDT-SWAP" in collector.retired
        for inst_id in survivors:
            assert_exact(store, sim, inst_id, "1m", since, TF1.floor(delisted[0]) + 14 * TF1.ms)
            # Back on the websocket after the storm: most candles closing after it came as pushes.
            assert ws_share_after(store, inst_id, delisted[0] + 2 * MINUTE_MS) >= 0.8
        # The delisted series keeps its data, exact up to where it stopped.
        rows = stored_rows(store, "DOT-USDT-SWAP", TF1)
        assert rows and rows[-1][0] + TF1.ms <= delisted[0] + TF1.ms
        assert_exact(store, sim, "DOT-USDT-SWAP", "1m", since, delisted[0] - 3 * TF1.ms)
        assert "DOT-USDT-SWAP" in read_delisted(settings.data_dir)
        # Survivorship-free: the qlib export keeps the delisted instrument with its real range.
        out = settings.data_dir.parent / "qlib"
        export_qlib(store, out, TF1)
        ranges = {
            line.split("\t")[0]: line.split("\t")[1:]
            for line in (out / "instruments" / "all.txt").read_text().splitlines()
        }
        assert ranges["DOT-USDT-SWAP"] == [format_time(rows[0][0]), format_time(rows[-1][0])]
        assert ranges["BTC-USDT"][1] > ranges["DOT-USDT-SWAP"][1]
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        said = [w for w in warnings if "DOT-USDT-SWAP is no longer listed" in w]
        assert len(said) == 1, warnings
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not [r for r in caplog.records if r.exc_info]

        # A restart with the same symbols: one warning, and the others run.
        caplog.clear()
        with caplog.at_level(logging.INFO):
            again = await run_with(
                settings, lambda: until(live(caplog, sim, 2), "live again"), local=clock,
                clock=ExchangeClock(),
            )  # fmt: skip
        assert {s.inst.inst_id for s in again.states.values()} == {"BTC-USDT", "ETH-USDT"}
        assert any("DOT-USDT-SWAP is no longer listed" in r.getMessage() for r in caplog.records)


async def test_one_delisting_among_100_series_leaves_99_streaming(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        Simulator(seed=32, speed=SPEED, rate_limit_scale=0, push_interval=0.1,
                  extra_instruments=95) as sim,
        local_time() as clock,
    ):  # fmt: skip
        names = ["BTC/USDT", "ETH/USDT", "ADA/USDT", "DOT/USDT", "LINK/USDT"]
        names += [f"SIM{i:04d}/USDT" for i in range(1, 96)]
        settings = live_settings(make_settings, sim, ",".join(names))
        since = parse_time_spec(settings.since or "", 0)  # as the collector reads it
        store = Store(settings.data_dir)
        delisted: list[int] = []
        others = [n.replace("/", "-") for n in names if n != "SIM0042/USDT"]

        async def script() -> None:
            await until(live(caplog, sim, 100), "collecting live")
            delisted.append(sim.delist("SIM0042-USDT"))
            await sim.drop_connections()
            await until(logged(caplog, "SIM0042-USDT is no longer listed"), "SIM0042 retired",
                        clock=clock, step=0.1)  # fmt: skip
            await until_holds(stored_to(store, others, delisted[0] + 10 * TF1.ms), "10 bars",
                              every=0.5)  # fmt: skip

        with caplog.at_level(logging.INFO):
            collector = await run_with(settings, script, local=clock, clock=ExchangeClock())
        assert set(collector.retired) == {"SIM0042-USDT"}
        assert len(collector.states) == 99
        end = TF1.floor(delisted[0]) + 10 * TF1.ms
        after = delisted[0] + 2 * MINUTE_MS
        shares = []
        for state in collector.states.values():
            inst_id = state.inst.inst_id
            assert_exact(store, sim, inst_id, "1m", since, end)
            shares.append(ws_share_after(store, inst_id, after))
        assert min(shares) >= 0.8, sorted(shares)[:5]


async def test_maintenance_is_waited_out_then_caught_up(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async with Simulator(seed=33, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        settings = live_settings(make_settings, sim, "BTC/USDT,ETH/USDT:USDT", funding=True)
        since = parse_time_spec(settings.since or "", 0)  # as the collector reads it
        store = Store(settings.data_dir)
        both = ("BTC-USDT", "ETH-USDT-SWAP")
        ended: list[int] = []
        counts: list[int] = []  # requests refused during the maintenance

        async def script() -> None:
            await until(live(caplog, sim, 2), "collecting live")
            began, refused = sim.now_ms(), sim.stats.rest_errors
            sim.begin_maintenance()
            # 8 exchange minutes: candles close meanwhile that only a catch-up can bring.
            await until(lambda: sim.now_ms() >= began + 8 * MINUTE_MS, "8 minutes")
            counts.append(sim.stats.rest_errors - refused)
            sim.end_maintenance()
            ended.append(sim.now_ms())
            await until_holds(stored_to(store, both, ended[0] + 16 * TF1.ms), "16 bars after")

        with caplog.at_level(logging.INFO):
            await run_with(settings, script)
        assert counts[0] > 0  # the collector met the maintenance (and waited it out)
        for inst_id in both:
            assert_exact(store, sim, inst_id, "1m", since, TF1.floor(ended[0]) + 16 * TF1.ms)
            # ccxt's own dial backoff (0.1 s doubling per failed dial, OKX.md §2.7) delays the
            # reconnect by up to ~3 s of real time after a 4 s outage: 6 minutes at this speed.
            assert ws_share_after(store, inst_id, ended[0] + 8 * MINUTE_MS) >= 0.8


async def test_collect_started_during_maintenance_waits_for_its_end(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async with Simulator(seed=34, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        settings = live_settings(make_settings, sim, "BTC/USDT")
        since = parse_time_spec(settings.since or "", 0)  # as the collector reads it
        store = Store(settings.data_dir)
        caught_up: list[int] = []
        sim.begin_maintenance()

        async def script() -> None:
            # Refused many times over before it ends: maintenance is waited out, not counted
            # against a retry limit.
            await until(lambda: sim.stats.rest_errors >= 30, "30 refused requests")
            sim.end_maintenance()
            await until(live(caplog, sim), "collecting live")
            caught_up.append(TF1.floor(sim.now_ms()) + 2 * TF1.ms)  # live candles after it
            await until_holds(stored_to(store, ["BTC-USDT"], caught_up[0]), "live candles")

        with caplog.at_level(logging.INFO):
            await run_with(settings, script)
        assert_exact(store, sim, "BTC-USDT", "1m", since, caught_up[0])


async def test_backfill_waits_out_maintenance(make_settings: MakeSettings) -> None:
    from tests.test_backfill import assert_store_equals_market, backfill

    async with Simulator(seed=35, speed=1.0, rate_limit_scale=0) as sim:
        settings = make_settings(sim, symbols="BTC/USDT", timeframes="1m", since="2d",
                                 funding=False)  # fmt: skip
        now = sim.now_ms()
        sim.begin_maintenance()

        async def end_later() -> None:
            # Refused far more often than the ten attempts a backfill gives a page: maintenance
            # is waited out, not counted.
            await until(lambda: sim.stats.rest_errors >= 30, "30 refused requests")
            sim.end_maintenance()

        ender = asyncio.create_task(end_later())
        await backfill(settings)
        await ender
        # The edges are the clock's, not the maintenance's: `--since 2d` is resolved when the
        # backfill starts (a few real seconds after `now`, perhaps in the next minute), and
        # only candles closed by `now` are certain to be stored.
        assert_store_equals_market(Store(settings.data_dir), sim, "BTC-USDT", "1m",
                                   now - 2 * 24 * 60 * MINUTE_MS + MINUTE_MS,
                                   TF1.floor(now))  # fmt: skip


async def test_every_configured_symbol_delisted_is_bad_input(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    async with Simulator(seed=36, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        settings = live_settings(make_settings, sim, "DOT/USDT")
        with caplog.at_level(logging.INFO):
            await run_with(settings, lambda: until(live(caplog, sim), "collecting live"))
        assert stored_rows(Store(settings.data_dir), "DOT-USDT", TF1)
        sim.delist("DOT-USDT")
        with pytest.raises(BadInput, match="none of the configured symbols"):
            await run_with(settings, lambda: asyncio.sleep(0))


async def test_a_selector_follows_listings_and_delistings(
    make_settings: MakeSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with (
        Simulator(seed=37, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim,
        local_time() as clock,
    ):
        settings = live_settings(make_settings, sim, "spot:USDT")
        since = parse_time_spec(settings.since or "", 0)  # as the collector reads it
        store = Store(settings.data_dir)
        events: dict[str, int] = {}
        followed = ("BTC-USDT", "ETH-USDT", "DOT-USDT", "LINK-USDT", "NEW-USDT")

        async def script() -> None:
            await until(live(caplog, sim, 5), "collecting live")
            events["listed"] = sim.list_instrument("NEW-USDT")
            await clock.advance(REFRESH_SECONDS)  # the periodic reload finds it
            await until(logged(caplog, "NEW-USDT joined the selection"), "NEW-USDT joined")
            await until(lambda: sim.now_ms() >= events["listed"] + 4 * MINUTE_MS, "4 minutes")
            events["delisted"] = sim.delist("ADA-USDT")  # silent from now on
            # The next periodic reload misses it; the one it asks for, spaced out, confirms.
            await clock.advance(REFRESH_SECONDS)
            await until(logged(caplog, "ADA-USDT is no longer listed"), "ADA retired",
                        clock=clock, step=0.1)  # fmt: skip
            # Candles enough for the new listing's websocket share, stored (not timed).
            await until_holds(stored_to(store, followed, events["listed"] + 14 * TF1.ms),
                              "14 bars after the listing")  # fmt: skip

        with caplog.at_level(logging.INFO):
            collector = await run_with(settings, script, local=clock, clock=ExchangeClock())
        assert collector.counters.listed == 1 and set(collector.retired) == {"ADA-USDT"}
        end = TF1.floor(events["listed"]) + 14 * TF1.ms
        for inst_id in followed[:-1]:
            assert_exact(store, sim, inst_id, "1m", since, end)
        # The new listing: every candle from its first one (the bar after its list time).
        rows = stored_rows(store, "NEW-USDT", TF1)
        assert rows[0][0] == TF1.ceil(events["listed"])
        assert_exact(store, sim, "NEW-USDT", "1m", events["listed"], end)
        assert ws_share_after(store, "NEW-USDT", rows[0][0] + 4 * MINUTE_MS) >= 0.8
        # The delisted one keeps its data; status and the export say when it ended.
        ada = stored_rows(store, "ADA-USDT", TF1)
        assert_exact(store, sim, "ADA-USDT", "1m", since, events["delisted"] - 3 * TF1.ms)
        statuses = {s.inst_id: s for s in collect_status(store, sim.now_ms())}
        assert statuses["ADA-USDT"].delisted_ms is not None
        assert statuses["ADA-USDT"].delisted_ms >= events["delisted"]
        assert statuses["BTC-USDT"].delisted_ms is None
        export_qlib(store, tmp_path / "qlib", TF1)
        lines = (tmp_path / "qlib" / "instruments" / "all.txt").read_text().splitlines()
        ranges = {line.split("\t")[0]: line.split("\t")[1:] for line in lines}
        assert ranges["ADA-USDT"] == [format_time(ada[0][0]), format_time(ada[-1][0])]
        assert ranges["NEW-USDT"][0] == format_time(rows[0][0])
