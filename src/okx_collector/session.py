"""What every data command does first: lock the data dir, reach the exchange, resolve symbols."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from okx_collector.config import Settings
from okx_collector.errors import (
    EnvironmentProblem,
    ExchangeRejected,
    ExchangeUnavailable,
    NotOkxAnswer,
)
from okx_collector.exchange import Instrument, OkxExchange
from okx_collector.retry import BackoffFactory, backoff_delays, with_retries
from okx_collector.store import Store
from okx_collector.store.store import cache_bytes
from okx_collector.timeframes import Timeframe

log = logging.getLogger(__name__)
LOCK_NAME = ".okx-collector.lock"


@contextlib.contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the data dir: two writers would race on the same files."""
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
            raise EnvironmentProblem(
                f"another okx-collector is already writing to {data_dir}; "
                "stop it first or use another --data-dir"
            ) from None
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


@dataclass
class Session:
    """A connected exchange and the validated series of the settings."""

    exchange: OkxExchange
    instruments: list[Instrument]
    funding: list[Instrument]  # perpetuals whose funding is collected
    timeframes: tuple[Timeframe, ...]
    now: int  # exchange time at start

    @property
    def series(self) -> list[tuple[Instrument, Timeframe]]:
        return [(inst, tf) for inst in self.instruments for tf in self.timeframes]


async def open_session(
    settings: Settings,
    *,
    rate_limit_scale: float = 1.0,
    keepalive_ms: int = 18_000,
    delays: BackoffFactory = backoff_delays,
) -> Session:
    """Connect, load markets (a few retries), resolve symbols, read the exchange's clock.

    The caller owns the returned exchange and must close it.
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
        instruments = exchange.resolve(settings.symbols)
        funding = exchange.funding_instruments(instruments) if settings.funding else []
    except BaseException:
        await exchange.close()
        raise
    return Session(exchange, instruments, funding, settings.timeframes, now)


def open_store(data_dir: Path, cache_mb: float | None = None) -> Store:
    """The store, after start-up recovery (stale temp files removed, unreadable files set aside);
    `cache_mb`: its partition cache (None: the store's default)."""
    store = Store(data_dir, cache_bytes=cache_bytes(cache_mb))
    for note in store.recover():
        log.warning("%s", note)
    return store


def report_notes(store: Store) -> None:
    """Log the repairs the store made while the job ran."""
    for note in store.take_notes():
        log.warning("%s", note)
