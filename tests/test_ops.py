"""Operations, over real wires: /metrics and /health while collect runs against the simulator
with faults on, and systemd's notify protocol on a real unix datagram socket."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from okx_collector.config import Settings
from okx_collector.errors import EnvironmentProblem
from okx_collector.live.collector import Collector
from okx_collector.live.run import collect_async
from okx_collector.ops.notify import Notifier
from okx_collector.simulator import Simulator
from okx_collector.timeframes import MINUTE_MS
from tests.collect_helpers import iso
from tests.conftest import fast_delays

MakeSettings = Callable[..., Settings]
SPEED = 120.0  # a 1m candle closes every 0.5 s of real time; "two bars" is 1 s
SERIES = (("BTC-USDT", "1m"), ("ETH-USDT-SWAP", "1m"))
AGE = "okx_collector_series_last_candle_age_seconds"
WAIT = 30.0  # seconds a condition may take before the test fails (a loaded CI machine)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ops_settings(make_settings: MakeSettings, sim: Simulator, **flags: Any) -> Settings:
    return make_settings(
        sim, symbols="BTC/USDT,ETH/USDT:USDT", timeframes="1m", mode="auto", funding=False,
        since=iso(sim.now_ms() - 10 * MINUTE_MS), poll_interval=0.3, heartbeat=0.5, **flags,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def collecting(settings: Settings, **kwargs: Any) -> AsyncIterator[asyncio.Task[Collector]]:
    """collect_async as a task; stopped (and awaited) when the block ends."""
    stop = asyncio.Event()
    task = asyncio.create_task(
        collect_async(settings, stop, delays=fast_delays, rate_limit_scale=0, **kwargs)
    )
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


class Scraper:
    """GETs /metrics and /health of a running collect."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session = session
        self.base = f"http://127.0.0.1:{port}"

    async def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """{(sample name, sorted labels): value}, parsed by prometheus-client's parser."""
        async with self.session.get(self.base + "/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return out

    async def health(self) -> tuple[int, dict[str, Any]]:
        async with self.session.get(self.base + "/health") as response:
            return response.status, await response.json()

    async def until(self, what: str, check: Callable[[], Awaitable[bool]]) -> None:
        """Scrape until `check()` holds (the collector moves at its own pace)."""
        deadline = time.monotonic() + WAIT
        while not await self._holds(check):
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {WAIT}s: {what}")
            await asyncio.sleep(0.05)

    @staticmethod
    async def _holds(check: Callable[[], Awaitable[bool]]) -> bool:
        try:
            return await check()
        except aiohttp.ClientConnectionError:  # not listening yet
            return False


async def eventually(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT}s: {what}")
        await asyncio.sleep(0.05)


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def per_series(samples: dict[Any, float], name: str) -> list[float]:
    return [value(samples, name, inst_id=i, timeframe=t) for i, t in SERIES]


async def test_metrics_and_health_follow_faults(make_settings: MakeSettings) -> None:
    async with Simulator(seed=31, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
        port = free_port()
        settings = ops_settings(make_settings, sim, metrics_port=port)
        async with collecting(settings) as task, aiohttp.ClientSession() as session:
            scrape = Scraper(session, port)

            async def healthy() -> bool:
                assert not task.done(), task
                return (await scrape.health())[0] == 200

            async def streaming() -> bool:
                samples = await scrape.metrics()
                return (
                    value(samples, "okx_collector_live") == 1
                    and per_series(samples, "okx_collector_series_polling") == [0, 0]
                    and value(samples, "okx_collector_rows_written_total",
                              kind="candles", source="ws") > 0
                )  # fmt: skip

            await scrape.until("healthy", healthy)
            await scrape.until("streaming and storing pushes", streaming)
            samples = await scrape.metrics()
            assert value(samples, "okx_collector_series") == 2
            assert value(samples, "okx_collector_close_to_disk_seconds_count",
                         kind="candles", source="ws") > 0  # fmt: skip
            assert value(samples, "process_resident_memory_bytes") > 10e6
            assert value(samples, "okx_collector_rest_requests_total",
                         endpoint="/api/v5/public/time") > 0  # fmt: skip
            assert value(samples, "okx_collector_rest_responses_total",
                         endpoint="/api/v5/public/time", code="2xx") > 0  # fmt: skip
            reconnects = value(samples, "okx_collector_reconnects_total")
            # Staleness is judged on the collector's clock, which learns the simulator's speed
            # from its syncs after going live (with REST failing, below, it could not).
            syncs = sim.stats.rest_by_route.get("public/time", 0)
            await eventually(
                "two clock syncs", lambda: sim.stats.rest_by_route["public/time"] >= syncs + 2
            )

            # A dropped connection raises the reconnect counter.
            sim.faults.ws_drop_after_s = 0.3

            async def reconnected() -> bool:
                samples = await scrape.metrics()
                return value(samples, "okx_collector_reconnects_total") > reconnects

            await scrape.until("reconnects_total rises after drops", reconnected)
            sim.faults.ws_drop_after_s = 0.0
            await scrape.until("healthy after the drops", healthy)

            # Stalled pushes: every series falls back to polling.
            fallbacks = value(await scrape.metrics(), "okx_collector_fallbacks_total")
            sim.faults.stop_pushing = True

            async def polling() -> bool:
                samples = await scrape.metrics()
                return per_series(samples, "okx_collector_series_polling") == [1, 1]

            await scrape.until("both series polling", polling)
            samples = await scrape.metrics()
            assert value(samples, "okx_collector_fallbacks_total") >= fallbacks + 2
            # ...and with REST failing too, their candles age past two bars: /health says so.
            sim.faults.rest_5xx_share = 1.0

            async def stale() -> bool:
                status, body = await scrape.health()
                return status == 503 and body["stale"] == 2

            await scrape.until("health 503 with both series stale", stale)
            _, body = await scrape.health()
            assert body["status"] == "stale"
            assert {s["series"] for s in body["stale_series"]} == {" ".join(s) for s in SERIES}
            first = per_series(await scrape.metrics(), AGE)
            assert min(first) > 2 * 60  # exchange seconds: more than two 1m bars

            async def older() -> bool:
                ages = per_series(await scrape.metrics(), AGE)
                return all(a > b for a, b in zip(ages, first, strict=True))

            await scrape.until("the age keeps growing while stalled", older)
            samples = await scrape.metrics()
            assert value(samples, "okx_collector_stale_series") == 2

            # The series can go stale on time alone, before a poll has met a 5xx: wait for one.
            async def counted_5xx() -> bool:
                return any(
                    v > 0 for (name, labels), v in (await scrape.metrics()).items()
                    if name == "okx_collector_rest_responses_total" and ("code", "5xx") in labels
                )  # fmt: skip

            await scrape.until("a 5xx answer counted", counted_5xx)

            # Faults off: pushes and REST return, the series are fresh and stream again.
            sim.faults.reset()
            await scrape.until("healthy again", healthy)
            await scrape.until("streaming again", streaming)
            ages = per_series(await scrape.metrics(), AGE)
            assert max(ages) <= 2 * 60
            assert value(await scrape.metrics(), "okx_collector_catchups_total") > 0
        collector = task.result()
        assert collector.counters.reconnects >= 1 and collector.counters.fallbacks >= 2


async def test_metrics_port_taken_is_one_clear_error(make_settings: MakeSettings,
                                                     sim: Simulator) -> None:  # fmt: skip
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = make_settings(sim, symbols="BTC/USDT", metrics_port=port)
        with pytest.raises(EnvironmentProblem, match=f"--metrics-port {port}: cannot listen"):
            await collect_async(settings, asyncio.Event(), delays=fast_delays)


async def test_health_says_starting_before_live(make_settings: MakeSettings) -> None:
    """During the start-up catch-up /health answers 503 "starting", /metrics live 0."""
    async with Simulator(seed=32, speed=1.0, rate_limit_scale=0) as sim:
        sim.faults.rest_latency_ms = 300  # the start-up catch-up takes a while
        port = free_port()
        settings = ops_settings(make_settings, sim, metrics_port=port)
        async with collecting(settings), aiohttp.ClientSession() as session:
            scrape = Scraper(session, port)

            async def answering() -> bool:
                await scrape.health()
                return True

            await scrape.until("the port answers", answering)
            status, body = await scrape.health()
            assert (status, body["status"]) == (503, "starting")
            assert value(await scrape.metrics(), "okx_collector_live") == 0
            sim.faults.rest_latency_ms = 0


# -- systemd notify -----------------------------------------------------------------------------


class NotifySocket:
    """The systemd side: a unix datagram socket bound by the test."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)
        self.messages: list[str] = []

    async def until(self, field: str, start: int = 0) -> int:
        """Receive datagrams until one from index `start` on holds the line `field` (or a line
        starting with it, for a `STATUS=`); returns its index."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(WAIT):
            while True:
                for i in range(start, len(self.messages)):
                    if any(line.startswith(field) for line in self.messages[i].split("\n")):
                        return i
                self.messages.append((await loop.sock_recv(self.sock, 4096)).decode())

    def close(self) -> None:
        self.sock.close()


ALL_STALE = "STATUS=collecting 2 series (2 polling, 2 stale)"
ALL_FRESH = "STATUS=collecting 2 series (0 polling, 0 stale)"


async def test_notify_ready_watchdog_stopping(make_settings: MakeSettings, tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    systemd = NotifySocket(address)
    try:
        async with Simulator(seed=33, speed=SPEED, rate_limit_scale=0, push_interval=0.05) as sim:
            settings = ops_settings(make_settings, sim)
            notifier = Notifier(address, watchdog_s=0.05)
            async with collecting(settings, notifier=notifier):
                await systemd.until("READY=1")
                assert systemd.messages[0] == "STATUS=catching up before going live"
                await systemd.until("WATCHDOG=1")
                ready = next(m for m in systemd.messages if "READY=1" in m)
                assert "STATUS=collecting 2 series" in ready
                # The collector's clock learns the simulator's speed from its syncs after going
                # live: with REST failing it could learn nothing more.
                syncs = sim.stats.rest_by_route.get("public/time", 0)
                await eventually(
                    "two clock syncs", lambda: sim.stats.rest_by_route["public/time"] >= syncs + 2
                )
                # Nothing fresh (pushes stopped, REST failing): the watchdog is no longer fed...
                sim.faults.update({"stop_pushing": True, "rest_5xx_share": 1.0})
                wedged = await systemd.until(ALL_STALE)
                wedged = await systemd.until(ALL_STALE, wedged + 1)
                # ...and is again once the series are fresh.
                sim.faults.reset()
                back = await systemd.until(ALL_FRESH, wedged)
                await systemd.until("WATCHDOG=1", back)
            await systemd.until("STOPPING=1")
        # Each watchdog tick sends WATCHDOG=1 (if fed), then STATUS= of the same snapshot: no
        # WATCHDOG=1 ever precedes a status in which every series is stale.
        messages = systemd.messages
        for i, message in enumerate(messages):
            if message.endswith(", 2 stale)") and i > 0:
                assert messages[i - 1] != "WATCHDOG=1", messages[i - 3 : i + 1]
        stopping = [m for m in messages if "STOPPING=1" in m]
        assert len(stopping) == 1  # sent once, when the stop began
        after = messages[messages.index(stopping[0]) + 1 :]
        assert not any("WATCHDOG=1" in m or "READY=1" in m for m in after)
    finally:
        systemd.close()


def test_notifier_from_systemd_environment() -> None:
    assert Notifier.from_env({}) is None
    assert Notifier.from_env({"NOTIFY_SOCKET": "relative/path"}) is None
    env = {"NOTIFY_SOCKET": "@okx-test", "WATCHDOG_USEC": "20000000"}
    notifier = Notifier.from_env(env)
    assert notifier is not None and notifier.watchdog_s == 10.0
    assert notifier.address == "\0okx-test"  # the abstract namespace
    notifier.close()
    # The watchdog is another process's (WATCHDOG_PID): no pings from this one.
    other = Notifier.from_env({**env, "WATCHDOG_PID": "1"}, pid=1234)
    assert other is not None and other.watchdog_s is None
    other.close()
    mine = Notifier.from_env({**env, "WATCHDOG_PID": "1234"}, pid=1234)
    assert mine is not None and mine.watchdog_s == 10.0
    mine.close()


async def test_notify_abstract_socket_and_unreachable_socket(tmp_path: Path) -> None:
    name = f"@okx-collector-test-{time.monotonic_ns()}"
    systemd = NotifySocket(name)
    try:
        notifier = Notifier(name)
        assert notifier.ready("collecting 1 series") and notifier.watchdog()
        await systemd.until("WATCHDOG=1")
        assert systemd.messages[0] == "READY=1\nSTATUS=collecting 1 series"
        notifier.close()
    finally:
        systemd.close()
    # Nobody listening: nothing raised, nothing blocks; it says it was not delivered.
    gone = Notifier(str(tmp_path / "nobody.sock"))
    assert not gone.watchdog()
    gone.close()
