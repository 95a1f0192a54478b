"""What `collect` shows its operators: the metrics endpoint, /health, systemd notifications.

`Ops` is built before the start-up catch-up (so that a taken port fails at once, and /health says
"starting" meanwhile), hooks into the exchange and the writer's stores, and is the collector's
observer: its `run` is a task of the collector's task group, started once the collector is live.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from okx_collector.live.clock import ExchangeClock
from okx_collector.live.writer import WritableStore
from okx_collector.ops.health import Snapshot, progressing, stale, take
from okx_collector.ops.metrics import Metrics
from okx_collector.ops.notify import Notifier
from okx_collector.ops.server import OpsServer
from okx_collector.ops.stores import ObservedStore

if TYPE_CHECKING:
    from okx_collector.exchange import OkxExchange
    from okx_collector.live.collector import Collector

log = logging.getLogger("okx_collector.ops")

STATUS_SECONDS = 10.0  # how often systemd's STATUS line is refreshed without a watchdog


class Ops:
    """Metrics and /health on `host:port` (port None: none), and `notifier` (None: none)."""

    def __init__(
        self,
        host: str,
        port: int | None,
        notifier: Notifier | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.notifier = notifier
        self.metrics = Metrics() if port is not None else None
        self.server = OpsServer(self.metrics, self.snapshot) if self.metrics else None
        self._collector: Collector | None = None  # once live
        self._live_since = 0  # exchange ms the collector went live

    async def start(self) -> None:
        """Listen (when a port is set) and tell systemd what is going on."""
        if self.server is not None and self.port is not None:
            await self.server.start(self.host, self.port)
        if self.notifier is not None:
            self.notifier.status("catching up before going live")

    async def close(self) -> None:
        if self.notifier is not None:
            self.notifier.stopping()
            self.notifier.close()
        if self.server is not None:
            await self.server.stop()

    # -- hooks ------------------------------------------------------------------------------------

    def observe_exchange(self, exchange: OkxExchange) -> None:
        if self.metrics is not None:
            exchange.observe_rest(self.metrics)

    def store(self, store: WritableStore, clock: ExchangeClock) -> WritableStore:
        """The live writer's store, observed when metrics are on."""
        return store if self.metrics is None else ObservedStore(store, self.metrics, clock)

    def snapshot(self) -> Snapshot | None:
        """The live collector's snapshot, or None before it is live."""
        if self._collector is None:
            return None
        return take(self._collector, self._live_since)

    # -- the collector's observer ---------------------------------------------------------------

    async def run(self, collector: Collector, stop: asyncio.Event) -> None:
        """Live now: READY=1, then WATCHDOG=1 while the collector progresses; STOPPING=1 at the
        end (also when cancelled, which is how the collector ends its tasks)."""
        self._collector = collector
        self._live_since = collector.clock.now()
        notifier = self.notifier
        if notifier is None:
            return
        snap = self.snapshot()
        notifier.ready(_status(snap))
        period = notifier.watchdog_s or STATUS_SECONDS
        try:
            while not stop.is_set():
                snap = self.snapshot()
                if snap is not None and notifier.watchdog_s and progressing(snap):
                    notifier.watchdog()
                notifier.status(_status(snap))
                await asyncio.sleep(period)
        finally:
            notifier.stopping()


def _status(snap: Snapshot | None) -> str:
    if snap is None:
        return "starting"
    polling = sum(1 for v in snap.series if v.polling)
    return f"collecting {len(snap.series)} series ({polling} polling, {len(stale(snap))} stale)"
