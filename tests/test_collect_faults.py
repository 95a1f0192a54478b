"""Live collection under faults: the dataset stays exact; auto mode falls back and returns.

Each script waits on what the fault must have caused (reconnects, series fallen back, errors
answered) and each test compares the store with the market up to a close fixed when the
faults ended: nothing is timed, so a loaded machine only makes them longer."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from okx_collector.config import Settings, parse_time_spec
from okx_collector.simulator import Simulator
from okx_collector.store import Store
from okx_collector.timeframes import MINUTE_MS, Timeframe
from tests.clock_helpers import beats, mentions, until, until_holds
from tests.collect_helpers import assert_exact, iso, stored_sources
from tests.collect_helpers import run_with as run_with  # re-exported: other tests import it here

MakeSettings = Callable[..., Settings]
SPEED = 120.0  # a 1m candle closes every 0.5 s of real time
TF1 = Timeframe.parse("1m")
SYMBOLS = ("BTC-USDT", "ETH-USDT-SWAP")
CANDLE_ROUTES = ("market/candles", "market/history-candles")
# The collector's log lines this file waits for (live/catchup.py). (A lost stream is not always
# logged: one replaced while the collector paused counts only in the heartbeat's `reconnects`.)
FELL_BACK = "no websocket push for a while; polling over REST"
RESUMED = "websocket pushes resumed; back to streaming"


def fault_settings(make_settings: MakeSettings, sim: Simulator, mode: str = "auto") -> Settings:
    since = iso(sim.now_ms() - 10 * MINUTE_MS)
    return make_settings(
        sim, symbols="BTC/USDT,ETH/USDT:USDT", timeframes="1m", since=since, mode=mode,
        poll_interval=0.3, heartbeat=0.5, funding=False,
    )  # fmt: skip


def exact_to(settings: Settings, sim: Simulator, end: int) -> Callable[[], None]:
    """A check: every series is stored exactly from --since to at least the candle open at
    `end` (fixed by the test: a close after the faults ended)."""
    store = Store(settings.data_dir)
    since = parse_time_spec(settings.since or "", 0)

    def check() -> None:
        for inst_id in SYMBOLS:
            assert_exact(store, sim, inst_id, "1m", since, end)

    return check


def streamed(settings: Settings) -> Callable[[], None]:
    """A check: every series has stored a candle that came as a push (the collector is up and
    subscribed; the faults start then)."""
    store = Store(settings.data_dir)

    def check() -> None:
        for inst_id in SYMBOLS:
            assert "ws" in stored_sources(store, inst_id, TF1), inst_id

    return check


def after_faults(sim: Simulator) -> int:
    """The open of the candle after the one open now: it closes after the faults ended."""
    return TF1.floor(sim.now_ms()) + TF1.ms


async def test_dropped_connections_every_second(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="okx_collector")
    async with Simulator(seed=21, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        settings = fault_settings(make_settings, sim, "ws")
        ends: list[int] = []

        async def script() -> None:
            await until_holds(streamed(settings), "streaming")
            mark = len(caplog.records)
            sim.faults.ws_drop_after_s = 0.7
            await until(lambda: beats(caplog, "reconnects", mark) >= 3, "three reconnects")
            sim.faults.ws_drop_after_s = 0.0
            ends.append(after_faults(sim))
            await until_holds(exact_to(settings, sim, ends[0]), "exact after the drops")

        collector = await run_with(settings, script)
        assert collector.counters.reconnects >= 3
        exact_to(settings, sim, ends[0])()


async def test_stalled_stream_auto_falls_back_and_returns(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    # 1m candles: stale after max(30 s, 30 s) = 30 simulated s = 0.25 s real at this speed.
    caplog.set_level(logging.INFO, logger="okx_collector")
    async with Simulator(seed=22, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        settings = fault_settings(make_settings, sim, "auto")
        store = Store(settings.data_dir)
        keys = [f"{inst_id} 1m" for inst_id in SYMBOLS]
        ends: list[int] = []

        def switched(text: str, mark: int) -> Callable[[], bool]:
            return lambda: all(mentions(caplog, f"{key}: {text}", mark) for key in keys)

        def polled(since: int) -> Callable[[], None]:
            def check() -> None:  # candles that closed during the stall came over REST
                for inst_id in SYMBOLS:
                    assert "poll" in stored_sources(store, inst_id, TF1, since), inst_id

            return check

        def back(end: int) -> Callable[[], None]:
            exact = exact_to(settings, sim, end)

            def check() -> None:
                exact()
                for inst_id in SYMBOLS:  # the newest candle came as a push again
                    assert stored_sources(store, inst_id, TF1)[-1] == "ws", inst_id

            return check

        def last_switches() -> dict[str, str]:
            """Each series' newest mode switch in the log: FELL_BACK or RESUMED."""
            last: dict[str, str] = {}
            for record in caplog.records:
                for key in keys:
                    for text in (FELL_BACK, RESUMED):
                        if f"{key}: {text}" in record.getMessage():
                            last[key] = text
            return last

        async def script() -> None:
            await until_holds(streamed(settings), "streaming")
            mark = len(caplog.records)
            stalled = TF1.floor(sim.now_ms())
            sim.faults.stop_pushing = True
            await until(switched(FELL_BACK, mark), "both series fell back to polling")
            await until_holds(polled(stalled), "candles polled during the stall")
            mark = len(caplog.records)
            sim.faults.stop_pushing = False
            await until(switched(RESUMED, mark), "both series back to streaming")
            ends.append(after_faults(sim))
            await until_holds(back(ends[0]), "streamed again, exact")
            assert last_switches() == dict.fromkeys(keys, RESUMED)

        collector = await run_with(settings, script)
        assert collector.counters.fallbacks >= 2  # both series fell back
        exact_to(settings, sim, ends[0])()


async def test_withheld_pong_reconnects(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="okx_collector")
    async with Simulator(seed=23, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        settings = fault_settings(make_settings, sim, "ws")
        ends: list[int] = []

        async def script() -> None:
            await until_holds(streamed(settings), "streaming")
            mark = len(caplog.records)
            sim.faults.withhold_pong = True
            await until(lambda: beats(caplog, "reconnects", mark) >= 1, "a reconnect")
            sim.faults.withhold_pong = False
            ends.append(after_faults(sim))
            await until_holds(exact_to(settings, sim, ends[0]), "exact after the reconnect")

        collector = await run_with(settings, script, keepalive_ms=300)
        assert collector.counters.reconnects >= 1
        exact_to(settings, sim, ends[0])()


async def test_malformed_frames_and_rest_errors(make_settings: MakeSettings) -> None:
    async with Simulator(seed=24, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        settings = fault_settings(make_settings, sim, "auto")
        ends: list[int] = []
        stats = sim.stats

        def candle_requests() -> int:
            return sum(stats.rest_by_route.get(r, 0) for r in CANDLE_ROUTES)

        def errors() -> int:
            return stats.injected_429 + stats.injected_5xx

        async def script() -> None:
            await until_holds(streamed(settings), "streaming")  # the faults start once it is up
            sim.faults.update({"ws_malformed_share": 0.2, "rest_429_share": 0.3,
                               "rest_5xx_share": 0.2})  # fmt: skip
            await until(
                lambda: (
                    stats.ws_malformed >= 5 and stats.injected_429 > 0 and stats.injected_5xx > 0
                ),
                "malformed frames sent, both kinds of REST errors answered",
            )
            # Dropped connections: what closes meanwhile is fetched through the REST errors.
            dropped, requests, failed = stats.ws_dropped, candle_requests(), errors()
            sim.faults.ws_drop_after_s = 0.8
            await until(
                lambda: (
                    stats.ws_dropped > dropped
                    and candle_requests() > requests
                    and errors() > failed
                ),
                "a connection dropped, candles fetched through REST errors",
            )
            sim.faults.reset()
            ends.append(after_faults(sim))
            await until_holds(exact_to(settings, sim, ends[0]), "exact after the faults")

        await run_with(settings, script)
        assert stats.injected_429 > 0 and stats.injected_5xx > 0
        exact_to(settings, sim, ends[0])()
