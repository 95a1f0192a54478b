"""The collector's one seam for operations (metrics, /health, systemd notify)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from okx_collector.live.collector import Collector


class Observer(Protocol):
    """Watches a live collector: `run` is a task of the collector's task group, started once the
    streams are, and cancelled with the others when `stop` is set."""

    async def run(self, collector: Collector, stop: asyncio.Event) -> None: ...


class Unobserved:
    """The default: nobody watches."""

    async def run(self, collector: Collector, stop: asyncio.Event) -> None:
        return None
