"""The errors okx-collector raises, and how the CLI turns them into exit codes.

    CollectorError                 base; `exit_code` and a one-line `str()` for the user
    ├── BadInput                   exit 2: the user asked for something invalid (symbol, timeframe,
    │                              date range, config file); the message says how to fix it
    ├── EnvironmentProblem         exit 1: the machine or network is in the way (data dir not
    │                              writable, exchange unreachable, websockets not installed)
    │   └── StorageError           a Parquet file could not be read or written
    └── ExchangeError              exit 1: raised by `exchange` only, after classification
        ├── ExchangeUnavailable    retryable: network trouble, timeouts, 429/50011, 5xx
        │   └── ExchangeMaintenance  OKX is in maintenance (50001): wait for as long as it lasts
        └── ExchangeRejected       fatal: the exchange refused the request itself (bad symbol,
            │                      bad parameter); retrying cannot help
            └── InstrumentGone     OKX does not know the instrument (51001 on REST, 60018 on a
                                   subscribe): delisted, or never listed

Only `exchange` maps ccxt's exceptions onto this tree, so the rest of the code never imports ccxt.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of every error okx-collector reports to the user."""

    exit_code = 1


class BadInput(CollectorError):
    """Invalid user input: exit code 2."""

    exit_code = 2


class EnvironmentProblem(CollectorError):
    """Something outside the user's input prevents the job: exit code 1."""


class StorageError(EnvironmentProblem):
    """A dataset file could not be read or written."""


class ExchangeError(CollectorError):
    """An exchange call failed; see the subclasses for whether to retry."""


class ExchangeUnavailable(ExchangeError):
    """Transient: the same request may succeed later (back off and retry)."""


class ExchangeMaintenance(ExchangeUnavailable):
    """OKX announced maintenance: every part waits for as long as it lasts (no attempt limit)."""


class ExchangeRejected(ExchangeError):
    """Permanent: the exchange refused this request; do not retry it."""


class InstrumentGone(ExchangeRejected):
    """OKX no longer knows this instrument (delisted), or never did."""

    def __init__(self, inst_id: str, message: str) -> None:
        super().__init__(f"{inst_id}: {message}")
        self.inst_id = inst_id


def unwrap(exc: BaseException) -> BaseException:
    """The first CollectorError inside (nested) exception groups, else the first leaf exception.

    TaskGroups wrap failures in ExceptionGroups; users should see the one error that matters.
    """
    if isinstance(exc, BaseExceptionGroup):
        leaves = [unwrap(e) for e in exc.exceptions]
        for leaf in leaves:
            if isinstance(leaf, CollectorError):
                return leaf
        return leaves[0]
    return exc
