"""Backfill progress: rich bars on a terminal, plain periodic log lines otherwise."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    # rich is imported where bars are drawn, not here: `collect` imports this module (for its
    # log lines) and never draws bars, and rich's modules are 2.3 MB of a live job's memory.
    from rich.console import Console
    from rich.progress import TaskID

log = logging.getLogger("okx_collector.backfill")


class Progress(Protocol):
    def add_series(self, key: str, bars: int) -> None: ...
    def advance(self, key: str, bars: int, candles: int) -> None: ...
    def finish(self, outcome: str = "finished") -> None: ...


class SilentProgress:
    """Progress for library callers who do not want output."""

    def add_series(self, key: str, bars: int) -> None:
        pass

    def advance(self, key: str, bars: int, candles: int) -> None:
        pass

    def finish(self, outcome: str = "finished") -> None:
        pass


class LogProgress:
    """One log line every `every` seconds: done/total bars, candles/s, ETA."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.total = 0
        self.done = 0
        self.candles = 0
        self._started = time.monotonic()
        self._last = self._started

    def add_series(self, key: str, bars: int) -> None:
        self.total += bars

    def advance(self, key: str, bars: int, candles: int) -> None:
        self.done += bars
        self.candles += candles
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            log.info("backfill %s", self._line(now))

    def _line(self, now: float) -> str:
        elapsed = max(now - self._started, 1e-9)
        rate = self.candles / elapsed
        left = self.total - self.done
        eta = f"{left / (self.done / elapsed):.0f}s" if self.done else "?"
        return (
            f"{self.done}/{self.total} bars checked, {self.candles} candles "
            f"({rate:.0f} candles/s, ETA {eta})"
        )

    def finish(self, outcome: str = "finished") -> None:
        """`outcome`: "finished", "interrupted" or "failed" (the last line must not claim a
        finished backfill that a signal or a full disk cut short)."""
        log.info("backfill %s: %s", outcome, self._line(time.monotonic()))


class BarsProgress:
    """Rich progress bars: one per series and a total, with candles/s and ETA."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress

        self._bars = RichProgress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8} candles/s"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._candles: dict[str, int] = {}
        self._started = time.monotonic()
        self._total = self._bars.add_task("total", total=0, rate="0")
        self._bars.start()

    def add_series(self, key: str, bars: int) -> None:
        self._tasks[key] = self._bars.add_task(key, total=bars, rate="0")
        self._candles[key] = 0
        total = sum(t.total or 0 for t in self._bars.tasks if t.id != self._total)
        self._bars.update(self._total, total=total)

    def advance(self, key: str, bars: int, candles: int) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        self._candles[key] += candles
        self._bars.update(
            self._tasks[key], advance=bars, rate=f"{self._candles[key] / elapsed:.0f}"
        )
        total_rate = sum(self._candles.values()) / elapsed
        self._bars.update(self._total, advance=bars, rate=f"{total_rate:.0f}")

    def finish(self, outcome: str = "finished") -> None:
        self._bars.stop()


def make_progress(console: Console | None = None) -> Progress:
    """Bars when stderr is a terminal, log lines otherwise."""
    from rich.console import Console

    console = console or Console(stderr=True)
    return BarsProgress(console) if console.is_terminal else LogProgress()
