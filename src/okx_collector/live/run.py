"""The `collect` command: wire settings, store, exchange and collector; own the signals."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal

from okx_collector.backfill.progress import LogProgress
from okx_collector.backfill.runner import Backfiller
from okx_collector.config import Settings, parse_time_spec
from okx_collector.errors import EnvironmentProblem, unwrap
from okx_collector.exchange import OkxExchange
from okx_collector.instruments import Instrument
from okx_collector.live.clock import ExchangeClock
from okx_collector.live.collector import Collector, CollectorOptions
from okx_collector.live.derived import DerivedLive
from okx_collector.live.lifecycle import REFRESH_SECONDS
from okx_collector.localclock import REAL_CLOCK, LocalClock
from okx_collector.memory import give_back, tune_for_long_run
from okx_collector.ops import Ops
from okx_collector.ops.notify import Notifier
from okx_collector.retry import BackoffFactory, backoff_delays
from okx_collector.session import (
    Session,
    compacting,
    data_dir_lock,
    open_session,
    open_store,
    report_notes,
    selected,
)
from okx_collector.store import Store
from okx_collector.store.lifecycle import record_delisted
from okx_collector.timeframes import Timeframe

log = logging.getLogger("okx_collector.collect")
DEFAULT_SINCE = "1d"  # where an empty store's series start


async def collect_async(
    settings: Settings,
    stop: asyncio.Event,
    *,
    clock: ExchangeClock | None = None,
    delays: BackoffFactory = backoff_delays,
    keepalive_ms: int = 18_000,
    rate_limit_scale: float = 1.0,
    refresh_seconds: float = REFRESH_SECONDS,
    notifier: Notifier | None = None,
    local: LocalClock = REAL_CLOCK,
) -> Collector:
    """Collect until `stop` is set; returns the finished collector (for its counters).

    `refresh_seconds`: how often OKX's instrument list is reloaded (delistings, listings).
    `notifier`: systemd's notify socket (see ops.notify); `settings.metrics_port` serves metrics
    and /health for the whole run. `local`: the collector's timers run on it, and so does the
    exchange clock unless `clock` is given.
    """
    ops = Ops(settings.metrics_host, settings.metrics_port, notifier)
    await ops.start()
    try:
        return await _collect(
            settings, stop, ops, clock, delays, keepalive_ms, rate_limit_scale, refresh_seconds,
            local,
        )  # fmt: skip
    finally:
        await ops.close()


async def _collect(
    settings: Settings,
    stop: asyncio.Event,
    ops: Ops,
    clock: ExchangeClock | None,
    delays: BackoffFactory,
    keepalive_ms: int,
    rate_limit_scale: float,
    refresh_seconds: float,
    local: LocalClock,
) -> Collector:
    store = await asyncio.to_thread(open_store, settings.data_dir)
    mode = settings.mode
    problem = OkxExchange.websocket_problem()
    if problem and mode == "ws":
        raise EnvironmentProblem(f"--mode ws needs websockets: {problem}")
    if problem and mode == "auto":
        log.warning("websockets unavailable (%s); polling over REST", problem)
        mode = "poll"
    session = await open_session(
        settings, store, rate_limit_scale=rate_limit_scale, keepalive_ms=keepalive_ms, delays=delays
    )
    ops.observe_exchange(session.exchange)
    try:
        async with compacting(store):  # from the catch-up on: it writes too
            since = parse_time_spec(settings.since or DEFAULT_SINCE, session.now)
            # `--series` without `trade`: no trade candles (funding stays under --funding).
            trade = session.series if "trade" in settings.series else []
            await _repair(store, session, trade, since, delays, stop, local)
            series, funding_last = await asyncio.to_thread(_stored_ends, store, session, trade)
            options = CollectorOptions(
                mode=mode,
                poll_interval=settings.poll_interval,
                heartbeat=settings.heartbeat,
                since=since,
                delays=delays,
                refresh_seconds=refresh_seconds,
            )
            clock = clock or ExchangeClock(local.monotonic)  # synced when the collector starts

            kinds = [k for k in settings.series if k != "trade"]
            derived: DerivedLive | None = None  # mark, index, open interest (`live.derived`)

            async def on_delisted(inst_id: str, noticed_ms: int) -> None:
                if derived is not None:
                    derived.retire(inst_id)
                await asyncio.to_thread(record_delisted, store.data_dir, inst_id, noticed_ms)

            async def expand() -> list[Instrument]:
                chosen = await selected(session.exchange, session.selectors, delays)
                if derived is not None:
                    derived.follow(chosen)
                return chosen

            collector = Collector(
                session.exchange,
                ops.store(store, clock),
                series,
                session.funding,
                funding_last,
                options,
                clock,
                on_delisted=on_delisted,
                expand=expand if session.selectors else None,
                observer=ops,
                local=local,
                members=session.instruments,
            )
            # A failed write (a full disk) stops the job: the collector then raises it.
            collector.writer.on_failure = lambda _: stop.set()
            if mode != "poll":  # at a close, the writer holds the websockets (live.writer)
                collector.writer.hold = session.exchange.hold_reading
            # Everything built so far (ccxt's markets of every instrument, modules) lives as long as
            # the process: keep the cyclic GC from rescanning it. A full collection took 65 ms with
            # 2,000 instruments, a stall that lands on the candle-close write burst.
            gc.collect()
            gc.freeze()
            # The start-up's reads of every series and the instrument list freed more than
            # they keep (memory.py).
            give_back()
            log.info(
                "collecting %d series and %d funding streams in %s mode into %s",
                len(series), len(session.funding), mode, settings.data_dir,
            )  # fmt: skip
            if not kinds:
                await collector.run(stop)
            else:  # mark, index, open interest beside the candles, through the same writer
                derived = DerivedLive(
                    session.exchange, store, collector.writer, kinds, session.instruments,
                    session.timeframes, clock.now, mode=mode, poll_interval=settings.poll_interval,
                    delays=delays, on_refusal=collector.counters.count_refusal, local=local,
                )  # fmt: skip
                # The collector (and its writer) stops once the derived series have queued
                # their last rows.
                collector_stop = asyncio.Event()
                async with asyncio.TaskGroup() as group:
                    group.create_task(collector.run(collector_stop))
                    group.create_task(
                        _derived_then_stop(derived, clock, stop, since, collector_stop, local)
                    )
                log.info("mark, index and open interest: %s rows", derived.rows)
        log.info("stopped cleanly: %s", collector.totals_line())
    finally:
        await session.exchange.close()
    report_notes(store)
    return collector


async def _derived_then_stop(
    derived: DerivedLive,
    clock: ExchangeClock,
    stop: asyncio.Event,
    since: int,
    collector_stop: asyncio.Event,
    local: LocalClock,
) -> None:
    """The derived series start once the collector has synced the exchange clock (and armed
    its websocket sinks: the derived ones chain to its refusal sink); at `stop` they queue
    their last rows, then the collector is stopped (its writer writes them)."""
    try:
        while not stop.is_set() and not clock.synced:
            await local.sleep(0.05)
        if not stop.is_set():
            await derived.run(stop, since)
        await stop.wait()
    finally:
        collector_stop.set()


def _stored_ends(
    store: Store, session: Session, trade: list[tuple[Instrument, Timeframe]]
) -> tuple[list[tuple[Instrument, Timeframe, int | None]], dict[str, int | None]]:
    """Newest stored candle per series and newest settled funding per perpetual (file reads)."""
    series = [(inst, tf, store.last_candle_ts(inst.inst_id, tf)) for inst, tf in trade]
    funding = {inst.inst_id: store.last_funding_time(inst.inst_id) for inst in session.funding}
    return series, funding


async def _repair(
    store: Store,
    session: Session,
    trade: list[tuple[Instrument, Timeframe]],
    since: int,
    delays: BackoffFactory,
    stop: asyncio.Event,
    local: LocalClock,
) -> None:
    """Before going live, fetch every missing candle of each series' stored span (or since
    `since` for an empty series), at backfill speed: downtime, and holes such as a file moved
    aside at start, are filled while OKX still has the data."""
    firsts = await asyncio.to_thread(
        lambda: {(i.inst_id, tf.name): store.expected_first_ts(i.inst_id, tf) for i, tf in trade}
    )
    starts = {key: since if first is None else min(first, since) for key, first in firsts.items()}
    backfiller = Backfiller(session.exchange, store, LogProgress(), delays=delays, clock=local)
    # A stop request ends it early (what came is stored); the collector then stops at once.
    report = await backfiller.run(trade, [], since, session.now, session.now, starts, stop=stop)
    if report.written:
        log.info("caught up %d candles in %.1fs before going live", report.written, report.seconds)


async def _main(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            # Second signal: leave now. Files are replaced atomically, so none is torn.
            os._exit(128 + signum)
        log.info("%s received: flushing and stopping", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    await collect_async(settings, stop, notifier=Notifier.from_env(os.environ))


def run_collect(settings: Settings) -> None:
    tune_for_long_run()  # before any thread starts
    with data_dir_lock(settings.data_dir):
        try:
            asyncio.run(_main(settings))
        except BaseExceptionGroup as group:
            raise unwrap(group) from None
