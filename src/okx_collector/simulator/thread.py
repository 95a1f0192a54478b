"""Run a Simulator on its own event loop in a daemon thread (for sync code and subprocess tests)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from okx_collector.simulator.derived_market import DerivedMarket
from okx_collector.simulator.faults import Faults
from okx_collector.simulator.market import Market
from okx_collector.simulator.server import Simulator
from okx_collector.simulator.stats import Stats

_START_TIMEOUT_S = 30.0
T = TypeVar("T")


class SimulatorThread:
    """`Simulator(**kwargs)` served from a background thread. Use `with`.

    The market, faults and stats objects are the simulator's own: reading them, and assigning
    fault switches, is safe from any thread.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._sim: Simulator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def sim(self) -> Simulator:
        if self._sim is None:
            raise RuntimeError("the simulator thread is not running; call start() first")
        return self._sim

    @property
    def rest_url(self) -> str:
        return self.sim.rest_url

    @property
    def ws_url(self) -> str:
        return self.sim.ws_url

    @property
    def port(self) -> int:
        return self.sim.port

    @property
    def market(self) -> Market:
        return self.sim.market

    @property
    def derived(self) -> DerivedMarket:
        return self.sim.derived

    @property
    def faults(self) -> Faults:
        return self.sim.faults

    @property
    def stats(self) -> Stats:
        return self.sim.stats

    def now_ms(self) -> int:
        return self.sim.now_ms()

    def ccxt_config(self) -> dict[str, Any]:
        return self.sim.ccxt_config()

    def start(self) -> None:
        """Start serving; returns once the port is bound (raises what startup raised)."""
        if self._thread is not None:
            raise RuntimeError("already started")
        ready: Future[None] = Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="okx-simulator", daemon=True
        )
        self._thread.start()
        try:
            ready.result(timeout=_START_TIMEOUT_S)
        except BaseException:
            self._thread.join(timeout=_START_TIMEOUT_S)
            self._thread = None
            raise

    def _run(self, ready: Future[None]) -> None:
        async def main() -> None:
            try:
                sim = Simulator(**self._kwargs)
                await sim.start()
            except BaseException as e:
                ready.set_exception(e)
                return
            self._sim, self._loop = sim, asyncio.get_running_loop()
            self._stopped = asyncio.Event()
            ready.set_result(None)
            try:
                await self._stopped.wait()
            finally:
                await sim.stop()

        asyncio.run(main())

    def drop_connections(self, notice: bool = False) -> int:
        """Close every WS connection now; returns how many were open."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the simulator thread is not running")
        return asyncio.run_coroutine_threadsafe(self.sim.drop_connections(notice), loop).result()

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the simulator's loop (its state is the loop's) and return its
        result or raise its exception."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the simulator thread is not running")

        async def run() -> T:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), loop).result()

    # The bad-day switches of Simulator (docs/simulator.md "Bad days"), from any thread.

    def delist(self, inst_id: str) -> int:
        return self._call(self.sim.delist, inst_id)

    def list_instrument(self, inst_id: str) -> int:
        return self._call(self.sim.list_instrument, inst_id)

    def begin_maintenance(self, notice_s: float = 0.0) -> None:
        self._call(self.sim.begin_maintenance, notice_s)

    def end_maintenance(self) -> None:
        self._call(self.sim.end_maintenance)

    def set_quiet(self, inst_id: str, quiet: bool = True) -> None:
        self._call(self.sim.set_quiet, inst_id, quiet)

    def set_funding_interval(self, inst_id: str, hours: int, from_ms: int | None = None) -> int:
        return self._call(self.sim.set_funding_interval, inst_id, hours, from_ms)

    @property
    def delisted(self) -> dict[str, int]:
        return self.sim.delisted

    def stop(self) -> None:
        """Stop serving and join the thread."""
        loop, stopped, thread = self._loop, self._stopped, self._thread
        if loop is not None and stopped is not None:
            loop.call_soon_threadsafe(stopped.set)
        if thread is not None:
            thread.join(timeout=_START_TIMEOUT_S)
        self._thread = self._loop = self._stopped = None

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
