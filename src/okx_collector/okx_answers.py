"""What OKX answered, classified: exceptions onto retryable or fatal, rows that do not parse.

The one place that decides whether a failed call is worth retrying (`classify`), and the one place
that takes OKX's `data` list out of an answer (`okx_data`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from okx_collector.ccxt_lean import ccxt_async
from okx_collector.errors import (
    ExchangeError,
    ExchangeMaintenance,
    ExchangeRejected,
    ExchangeUnavailable,
    InstrumentGone,
    NotOkxAnswer,
)
from okx_collector.okx_ws import NotOkx

log = logging.getLogger("okx_collector.exchange")


def classify(exc: BaseException, inst_id: str | None = None) -> ExchangeError:
    """Map any exception from a ccxt call onto retryable or fatal (the one place that decides).

    `inst_id`: the instrument the call named, so that OKX's 51001 ("Instrument ID does not
    exist", ccxt's BadSymbol) becomes `InstrumentGone` for it.
    """
    if isinstance(exc, ExchangeError):
        return exc
    if isinstance(exc, NotOkx):  # retryable (a proxy's error page passes); start-up tries 5 times
        return NotOkxAnswer(exc.url, exc.detail)
    message = f"{type(exc).__name__}: {exc}".strip()
    if len(message) > 300:
        message = message[:300] + "..."
    if isinstance(exc, ccxt_async.OnMaintenance):
        return ExchangeMaintenance(message)
    if isinstance(exc, ccxt_async.BadSymbol) and inst_id is not None:
        return InstrumentGone(inst_id, message)
    # NetworkError covers RateLimitExceeded, DDoSProtection, ExchangeNotAvailable (5xx, 50011 on
    # old ccxt), OnMaintenance and RequestTimeout; BadResponse is a garbled or empty answer.
    if isinstance(
        exc,
        ccxt_async.NetworkError | ccxt_async.BadResponse | TimeoutError | ConnectionError | OSError,
    ):
        return ExchangeUnavailable(message)
    if isinstance(exc, ccxt_async.BaseError):
        return ExchangeRejected(message)
    return ExchangeUnavailable(message)


@contextmanager
def classified(inst_id: str | None = None) -> Iterator[None]:
    try:
        yield
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise classify(exc, inst_id) from exc


class BadRows:
    """Rows from OKX that do not parse (a number sent as `""`, a short row): each is skipped and
    its series fetched again later; the first per series is logged with its raw text, once."""

    def __init__(self) -> None:
        self.count = 0
        self._logged: set[str] = set()

    def report(self, what: str, raw: object) -> None:
        self.count += 1
        if what not in self._logged:
            self._logged.add(what)
            text = repr(raw)
            log.warning(
                "%s: skipped a row OKX sent that does not parse: %s (fetched again over REST; "
                "further ones for this series are counted, not logged)",
                what, text if len(text) <= 300 else text[:300] + "...",
            )  # fmt: skip


def okx_data(response: Any, endpoint: str) -> list[Any]:
    """The `data` list of an OKX answer; anything else is a garbled answer (retryable)."""
    data = response.get("data") if isinstance(response, dict) else None
    if data is None:
        data = []
    if not isinstance(data, list):
        text = " ".join(str(response).split())
        raise ExchangeUnavailable(f"{endpoint} answered without OKX's data list: {text[:100]!r}")
    return data
