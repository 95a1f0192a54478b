"""The `backfill` command: settings in, a filled store and a summary out.

SIGINT and SIGTERM: the first stops fetching; what was fetched is written, one line says what was
saved, and the exit code is 128 + the signal (130, 143). During start-up, with nothing fetched
yet, it stops at once. A second signal ends the process at once (files are replaced atomically,
so none is torn; the next run removes the temp file of a write it cut short).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

from okx_collector.backfill.derived import DerivedBackfiller
from okx_collector.backfill.progress import Progress, make_progress
from okx_collector.backfill.runner import Backfiller, BackfillReport
from okx_collector.config import Settings, resolve_range
from okx_collector.errors import Interrupted, unwrap
from okx_collector.retry import BackoffFactory, backoff_delays
from okx_collector.session import (
    compacting,
    data_dir_lock,
    open_session,
    open_store,
    report_notes,
)
from okx_collector.summary import emit_summary

log = logging.getLogger("okx_collector.backfill")
DEFAULT_SINCE = "30d"
T = TypeVar("T")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_backfill_async(
    settings: Settings,
    *,
    progress: Progress | None = None,
    rate_limit_scale: float = 1.0,
    delays: BackoffFactory = backoff_delays,
    stop: asyncio.Event | None = None,
) -> BackfillReport:
    """Backfill every configured series over [--since, --until); the caller holds the lock.

    `stop`: once set, start-up is cancelled (CancelledError), or fetching ends and what was
    fetched is written (the report says `interrupted`).
    """
    store = await _unless_stopped(stop, asyncio.to_thread(open_store, settings.data_dir))
    session = await _unless_stopped(
        stop, open_session(settings, store, rate_limit_scale=rate_limit_scale, delays=delays)
    )
    try:
        since, until = resolve_range(settings, session.now, DEFAULT_SINCE)
        backfiller = Backfiller(session.exchange, store, progress or make_progress(), delays=delays)
        derived = DerivedBackfiller(session.exchange, store, delays=delays)
        trade = session.series if "trade" in settings.series else []
        kinds = [k for k in settings.series if k != "trade"]
        async with compacting(store), asyncio.TaskGroup() as group:
            # Side by side: OKX limits the mark, index and rubik endpoints apart from the
            # candle endpoints, and the pacer keeps each under its own ceiling.
            main = group.create_task(
                backfiller.run(trade, session.funding, since, until, session.now, stop=stop)
            )
            if kinds:
                extra = group.create_task(
                    derived.run(
                        kinds, session.instruments, session.timeframes, since, until,
                        session.now, stop=stop,
                    )
                )  # fmt: skip
        report = main.result()
        if kinds:
            report.derived = extra.result()
            for note in report.derived.skipped:
                log.info("%s", note)
    finally:
        await session.exchange.close()
    report_notes(store)
    return report


async def _unless_stopped(stop: asyncio.Event | None, work: Coroutine[Any, Any, T]) -> T:
    """`work`'s result, or CancelledError if `stop` is set first (start-up has nothing to save)."""
    if stop is None:
        return await work
    async with asyncio.TaskGroup() as group:
        task = group.create_task(work)
        watch = group.create_task(stop.wait())
        task.add_done_callback(lambda _: watch.cancel())
        watch.add_done_callback(lambda _: task.cancel())
    if task.cancelled():
        raise asyncio.CancelledError
    return task.result()


class _StopRequest:
    """The signals a backfill has received (see the module's docstring)."""

    def __init__(self) -> None:
        self.signum = 0
        self.event: asyncio.Event | None = None  # set on the first signal, while the loop runs

    def on_loop(self, signum: int) -> None:
        if self.signum:
            os._exit(128 + signum)  # the second signal: leave now
        self.signum = signum
        log.info("%s received: writing what was fetched, then stopping",
                 signal.Signals(signum).name)  # fmt: skip
        assert self.event is not None
        self.event.set()

    def off_loop(self, signum: int, frame: object) -> None:
        """Before the event loop runs: nothing was fetched yet."""
        self.signum = self.signum or signum
        raise Interrupted(signum, "nothing was saved yet")


async def _main(settings: Settings, request: _StopRequest) -> BackfillReport:
    request.event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, request.on_loop, signum)
    return await run_backfill_async(settings, stop=request.event)


def run_backfill(settings: Settings) -> BackfillReport:
    request = _StopRequest()
    previous = {signum: signal.signal(signum, request.off_loop) for signum in STOP_SIGNALS}
    try:
        with data_dir_lock(settings.data_dir):
            report = asyncio.run(_main(settings, request))
    except asyncio.CancelledError:  # stopped during start-up
        raise Interrupted(request.signum or signal.SIGINT, "nothing was saved") from None
    except BaseExceptionGroup as group:
        raise unwrap(group) from None
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # (None: set outside Python; left as it is)
                signal.signal(signum, handler)
    extra = report.derived
    more = ""
    if extra is not None:
        rows = extra.rows
        more = f", {rows['mark']} mark, {rows['index']} index and {rows['oi']} open-interest rows"
    saved = (
        f"{report.written} candle rows and {report.funding_rows} funding rows{more} "
        f"written for {report.series + (extra.series if extra else 0)} series "
        f"in {report.seconds:.1f}s"
    )
    if report.interrupted:
        raise Interrupted(request.signum, f"{saved}; rerun to resume where it stopped")
    emit_summary(
        "backfill", f"{saved} ({report.requests} requests, {report.retries} retries)",
        settings.log_format, candle_rows=report.written, funding_rows=report.funding_rows,
        series=report.series, seconds=round(report.seconds, 3), requests=report.requests,
        retries=report.retries, **({} if extra is None else {
            "mark_rows": extra.rows["mark"], "index_rows": extra.rows["index"],
            "oi_rows": extra.rows["oi"],
        }),
    )  # fmt: skip
    return report
