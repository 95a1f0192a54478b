"""What the collector's mixins (`Streams`, `CatchUps`, `Membership`) share: the `Collector`'s
attributes and methods they use, declared once for the type checker.

`Collector` (live/collector.py) assigns each of them in its `__init__`; a mixin is never
built alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from okx_collector.instruments import Instrument
    from okx_collector.live.collector import CollectorOptions, Counters
    from okx_collector.live.funding import FundingTracker
    from okx_collector.live.lifecycle import InstrumentWatch
    from okx_collector.live.ports import LiveExchange
    from okx_collector.live.series import SeriesState
    from okx_collector.live.writer import Writer
    from okx_collector.localclock import LocalClock
    from okx_collector.timeframes import Timeframe


class CollectorParts:
    """The collector's state as its mixins see it (the comments are in `Collector.__init__`)."""

    exchange: LiveExchange
    local: LocalClock
    options: CollectorOptions
    counters: Counters
    writer: Writer
    states: dict[tuple[str, str], SeriesState]  # (instId, timeframe) -> its series
    funding: FundingTracker
    watch: InstrumentWatch
    timeframes: list[Timeframe]
    funding_on: bool
    retired: dict[str, int]
    members: set[str]  # every instrument the run follows (its series, funding or derived)
    _needs_catchup: set[tuple[str, str]]
    _missing_since: dict[tuple[str, str], float]
    _missing_before: set[str]
    _started: int
    _last_poll: float
    _catchup_slots: asyncio.Semaphore
    _catchups: set[asyncio.Task[None]]
    _group: asyncio.TaskGroup | None
    _streams: set[asyncio.Task[None]]
    _stop: asyncio.Event
    _on_delisted: Callable[[str, int], Awaitable[None]] | None
    _expand: Callable[[], Awaitable[list[Instrument]]] | None

    def _now(self) -> int:
        """Exchange time, ms (`Collector`)."""
        raise NotImplementedError

    def _start_streams(self, states: list[SeriesState], funding: list[Instrument]) -> None:
        """Websocket tasks for these series and perpetuals (`Streams`)."""
        raise NotImplementedError
