"""What every data command does first: lock the data dir, reach the exchange, resolve symbols."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from okx_collector.config import Settings
from okx_collector.errors import (
    BadInput,
    EnvironmentProblem,
    ExchangeRejected,
    ExchangeUnavailable,
    NotOkxAnswer,
)
from okx_collector.exchange import OkxExchange
from okx_collector.instruments import Instrument
from okx_collector.retry import BackoffFactory, backoff_delays, with_retries
from okx_collector.store import Store
from okx_collector.store.compact import BackgroundCompactor
from okx_collector.store.lifecycle import forget_delisted, read_delisted, record_delisted
from okx_collector.timeframes import Timeframe
from okx_collector.universe import Selector, needs_volumes, select, split_entries

log = logging.getLogger(__name__)
LOCK_NAME = ".okx-collector.lock"


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the data dir: two writers would race on the same files.

    The lock file holds the holder's PID, so that the refusal can name the process to stop. The
    flock, not the file, is the lock: a PID left by a killed process means nothing.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise EnvironmentProblem(
            f"data dir {data_dir} is not writable ({exc.strerror}); "
            "choose another --data-dir or fix its permissions"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(fd)
            raise EnvironmentProblem(
                f"another okx-collector{holder} is already writing to {data_dir}; "
                "stop it first or use another --data-dir"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            # Only a courtesy for the refusal's message: a full disk is reported, with the file
            # and the cure, by the first real write.
            log.debug("cannot record the PID in the lock file", exc_info=True)
        probe = data_dir / f".write-probe-{os.getpid()}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise EnvironmentProblem(
                f"data dir {data_dir} is not writable ({exc.strerror}); "
                "choose another --data-dir or fix its permissions"
            ) from None
        yield
    finally:
        os.close(fd)


def _lock_holder(fd: int) -> str:
    """` (pid 1234)` from the lock file, or nothing when it holds no PID (an older version)."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


@dataclass
class Session:
    """A connected exchange and the validated series of the settings."""

    exchange: OkxExchange
    instruments: list[Instrument]
    funding: list[Instrument]  # perpetuals whose funding is collected
    timeframes: tuple[Timeframe, ...]
    now: int  # exchange time at start
    selectors: list[Selector] = field(default_factory=list)  # followed while collecting

    @property
    def series(self) -> list[tuple[Instrument, Timeframe]]:
        return [(inst, tf) for inst in self.instruments for tf in self.timeframes]


async def open_session(
    settings: Settings,
    store: Store,
    *,
    rate_limit_scale: float = 1.0,
    keepalive_ms: int = 18_000,
    delays: BackoffFactory = backoff_delays,
) -> Session:
    """Connect, load markets (a few retries; through maintenance, as long as it lasts), resolve
    symbols, read the exchange's clock.

    A configured symbol whose data is in `store` but which OKX no longer lists was delisted: one
    WARNING, recorded in the store, and the others run. The caller owns the returned exchange
    and must close it.
    """
    exchange = OkxExchange(
        settings.rest_url,
        settings.ws_url,
        rate_limit_scale=rate_limit_scale,
        keepalive_ms=keepalive_ms,
    )
    try:
        try:
            await with_retries(exchange.load_markets, what="load markets", attempts=5,
                               delays=delays)  # fmt: skip
            now = await with_retries(exchange.fetch_time, what="fetch time", attempts=5,
                                     delays=delays)  # fmt: skip
        except NotOkxAnswer as exc:  # (after the same few tries: a proxy's page may pass)
            raise EnvironmentProblem(
                f"{settings.rest_url} does not answer like OKX's API ({exc.detail}); "
                "check --rest-url"
            ) from None
        except (ExchangeUnavailable, ExchangeRejected) as exc:
            raise EnvironmentProblem(
                f"cannot reach the exchange at {settings.rest_url} ({exc}); "
                "check the network or --rest-url"
            ) from None
        stored = await asyncio.to_thread(_stored_inst_ids, store)
        plain, selectors = split_entries(settings.symbols)
        resolution = exchange.resolve(plain, stored, allow_none=bool(selectors))
        for inst_id in resolution.gone:
            await asyncio.to_thread(record_delisted, store.data_dir, inst_id, now)
            log.warning(
                "%s is no longer listed by OKX (delisted): not collected; its data stays in %s",
                inst_id, store.data_dir,
            )  # fmt: skip
        instruments = list(resolution.instruments)
        if selectors:
            chosen = await selected(exchange, selectors, delays)
            instruments += [inst for inst in chosen if inst not in instruments]
            log.info("%s: %d instruments", ", ".join(map(str, selectors)), len(chosen))
            if not instruments:
                raise BadInput(
                    f"{', '.join(map(str, selectors))} matches no instrument OKX lists now; "
                    "check the currency (e.g. spot:USDT)"
                )
        marked = await asyncio.to_thread(read_delisted, store.data_dir)
        for inst in instruments:
            if inst.inst_id in marked:  # listed again (or marked by mistake): no longer delisted
                await asyncio.to_thread(forget_delisted, store.data_dir, inst.inst_id)
        funding = exchange.funding_instruments(instruments) if settings.funding else []
    except BaseException:
        await exchange.close()
        raise
    return Session(exchange, instruments, funding, settings.timeframes, now, selectors)


async def selected(
    exchange: OkxExchange, selectors: list[Selector], delays: BackoffFactory
) -> list[Instrument]:
    """What the selectors name in OKX's current list (with 24 h volumes for top-N ones)."""
    kinds = needs_volumes(selectors)
    volumes = (
        await with_retries(
            lambda: exchange.quote_volumes(kinds), what="24 h volumes", attempts=5, delays=delays
        )
        if kinds
        else {}
    )
    return select(selectors, exchange.listed, volumes)


def _stored_inst_ids(store: Store) -> set[str]:
    """Every instId with candles or settled funding in the store."""
    return {inst_id for inst_id, _ in store.list_candle_series()} | set(store.list_funding_series())


def open_store(data_dir: Path) -> Store:
    """The store of a writing command (the caller holds the data dir's lock), after start-up
    recovery (stale temp files removed, unreadable files set aside) and the compaction of what a
    previous run left in the journal."""
    store = Store(data_dir)
    for note in store.recover():
        log.warning("%s", note)
    done = store.compact()
    if done.files:
        log.info("merged %d journal files left by the previous run", done.files)
    return store


@contextlib.asynccontextmanager
async def compacting(store: Store) -> AsyncIterator[None]:
    """Compact the store's journal in the background while the block runs, and all of it at
    a clean exit (so that a stopped dataset is plain partitions). After a failure the journal
    is left as it is: the next start merges it."""
    compactor = BackgroundCompactor(store.compact, store.journal_pending)
    compactor.start()
    try:
        yield
    finally:
        await asyncio.to_thread(compactor.stop)
    await asyncio.to_thread(store.compact)


def report_notes(store: Store) -> None:
    """Log the repairs the store made while the job ran."""
    for note in store.take_notes():
        log.warning("%s", note)
