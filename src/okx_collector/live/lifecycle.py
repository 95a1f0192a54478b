"""OKX's instrument list, followed while collecting: delistings, and listings for selectors.

OKX delists dozens of pairs a year and lists new ones every week (OKX.md §7). The list is
reloaded every `refresh_seconds`, and soon after any sign that an instrument is gone (a REST 51001,
a 60018 subscription refusal): the collector then retires the instruments that left the list
and, with selectors, adds those that joined. A reload that fails is retried at the next one;
during maintenance it waits like every other call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from okx_collector.errors import ExchangeError
from okx_collector.localclock import REAL_CLOCK, LocalClock, wait_event
from okx_collector.retry import BackoffFactory, with_retries

log = logging.getLogger("okx_collector.collect")

REFRESH_SECONDS = 600.0  # OKX announces delistings days ahead; ten minutes late is harmless
MIN_CHECK_GAP_SECONDS = 5.0  # a burst of refusals (a batch of 100) causes one reload, not 100


class InstrumentWatch:
    """Reload the instrument list periodically and on demand; hand each new list to `on_list`."""

    def __init__(
        self,
        reload: Callable[[], Awaitable[set[str]]],
        on_list: Callable[[set[str]], Awaitable[None]],
        *,
        refresh_seconds: float = REFRESH_SECONDS,
        delays: BackoffFactory,
        local: LocalClock = REAL_CLOCK,
    ) -> None:
        self._reload = reload
        self._on_list = on_list
        self.refresh_seconds = refresh_seconds
        self._delays = delays
        self._local = local  # times the periodic reload and the spacing of asked-for ones
        self._wake = asyncio.Event()
        self._last_check = -MIN_CHECK_GAP_SECONDS
        self.checks = 0

    def check_soon(self) -> None:
        """Something looked delisted: reload the list soon (at most every few seconds)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            woken = await wait_event(self._local, self._wake, self.refresh_seconds)
            # Only checks asked for are spaced out; the periodic one keeps its schedule.
            gap = min(MIN_CHECK_GAP_SECONDS, self.refresh_seconds) - (
                self._local.monotonic() - self._last_check
            )
            if woken and gap > 0:
                await self._local.sleep(gap)
            self._wake.clear()
            self._last_check = self._local.monotonic()
            await self.check_now()

    async def check_now(self) -> None:
        try:
            listed = await with_retries(
                self._reload,
                what="reload the instrument list",
                attempts=3,
                delays=self._delays,
                clock=self._local,
            )
        except ExchangeError as exc:
            log.warning("instrument list not reloaded (%s); trying again later", exc)
            return
        self.checks += 1
        await self._on_list(listed)
