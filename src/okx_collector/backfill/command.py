"""The `backfill` command: settings in, a filled store and a summary out."""

from __future__ import annotations

import asyncio
import logging
import signal

from rich.console import Console

from okx_collector.backfill.progress import Progress, make_progress
from okx_collector.backfill.runner import Backfiller, BackfillReport
from okx_collector.config import Settings, resolve_range
from okx_collector.errors import unwrap
from okx_collector.retry import BackoffFactory, backoff_delays
from okx_collector.session import data_dir_lock, open_session, open_store, report_notes

log = logging.getLogger("okx_collector.backfill")
DEFAULT_SINCE = "30d"


async def run_backfill_async(
    settings: Settings,
    *,
    progress: Progress | None = None,
    rate_limit_scale: float = 1.0,
    delays: BackoffFactory = backoff_delays,
) -> BackfillReport:
    """Backfill every configured series over [--since, --until); the caller holds the lock."""
    store = await asyncio.to_thread(open_store, settings.data_dir, settings.cache_mb)
    session = await open_session(settings, store, rate_limit_scale=rate_limit_scale, delays=delays)
    try:
        since, until = resolve_range(settings, session.now, DEFAULT_SINCE)
        backfiller = Backfiller(session.exchange, store, progress or make_progress(), delays=delays)
        report = await backfiller.run(session.series, session.funding, since, until, session.now)
    finally:
        await session.exchange.close()
    report_notes(store)
    return report


async def _main(settings: Settings) -> BackfillReport:
    # SIGTERM, like Ctrl-C, cancels the run; the runner still writes what it has fetched.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_backfill_async(settings)


def run_backfill(settings: Settings) -> BackfillReport:
    with data_dir_lock(settings.data_dir):
        try:
            report = asyncio.run(_main(settings))
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None
        except BaseExceptionGroup as group:
            raise unwrap(group) from None
    Console(stderr=True).print(
        f"backfill: {report.written} candle rows and {report.funding_rows} funding rows "
        f"written for {report.series} series in {report.seconds:.1f}s "
        f"({report.requests} requests, {report.retries} retries)"
    )
    return report
