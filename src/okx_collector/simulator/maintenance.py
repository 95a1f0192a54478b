"""OKX maintenance windows (`Simulator.begin_maintenance` / `end_maintenance`).

While on, every REST route answers HTTP 503 `{"code":"50001",...}` (ccxt: `OnMaintenance`) and
websocket upgrades are refused with HTTP 503; the connections open when it begins are closed
(OKX.md §7). With a notice, OKX's 64008 frame goes to every open connection first and the
window starts `notice_s` real seconds later (OKX sends it about 30 s ahead; docs "Notice").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from okx_collector.simulator.ws import Connection

MAINTENANCE_CODE = "50001"
MAINTENANCE_MSG = "Service temporarily unavailable, please try again later."


class Maintenance:
    """Whether a maintenance window is on, and the timer of one announced but not yet begun."""

    def __init__(self) -> None:
        self.on = False
        self._pending: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> bool:
        """Announced with a notice, not begun yet."""
        return self._pending is not None

    def begin(
        self,
        notice_s: float,
        connections: Callable[[], Collection[Connection]],
    ) -> None:
        """Begin now, or announce (64008) and begin `notice_s` real seconds later; returns at
        once. `connections()` gives the connections open at the moment it is called."""
        if notice_s < 0:
            raise ValueError(f"notice_s must be >= 0, got {notice_s}")
        self._cancel()
        if notice_s == 0:
            self._start(connections)
            return
        for conn in connections():
            conn.notify_upgrade()
        loop = asyncio.get_running_loop()
        self._pending = loop.call_later(notice_s, self._start, connections)

    def end(self) -> None:
        """End the window (or cancel one announced)."""
        self._cancel()
        self.on = False

    def _start(self, connections: Callable[[], Collection[Connection]]) -> None:
        self._pending = None
        self.on = True
        for conn in list(connections()):
            conn.drop()

    def _cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
