"""Checks a batch must pass before any of it is written (all or nothing)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from okx_collector.errors import CollectorError
from okx_collector.models import SOURCES
from okx_collector.store.arrow import present, to_float64, to_int64
from okx_collector.timeframes import Timeframe

# A mask of the good rows, and what is wrong with the others.
Check = tuple[npt.NDArray[np.bool_], str]


class InvalidRecords(CollectorError, ValueError):
    """A batch handed to the store breaks the dataset's rules; nothing of it was written."""

    def __init__(self, series: str, key: str, value: int, problem: str, bad_rows: int) -> None:
        self.series = series
        self.key_value = value
        self.problem = problem
        self.bad_rows = bad_rows
        others = f" (and {bad_rows - 1} more bad rows)" if bad_rows > 1 else ""
        super().__init__(
            f"refusing to write {series}: row {key}={value} ({_iso(value)}): {problem}{others}; "
            "nothing from this batch was written"
        )


def _iso(ms: int) -> str:
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return "out of range"


def _floats(table: pa.Table, name: str) -> npt.NDArray[np.float64]:
    return to_float64(table.column(name))


def _first_bad(table: pa.Table, series: str, key: str, checks: list[Check]) -> None:
    """Raise for the earliest row failing any check (each check is a mask of good rows)."""
    bad_any = np.zeros(table.num_rows, dtype=np.bool_)
    for good, _ in checks:
        bad_any |= ~good
    if not bad_any.any():
        return
    keys = to_int64(table.column(key))
    row = int(np.flatnonzero(bad_any)[0])
    problem = next(msg for good, msg in checks if not good[row])
    raise InvalidRecords(series, key, int(keys[row]), problem, int(bad_any.sum()))


def _source_check(table: pa.Table) -> Check:
    src = table.column("source").to_pylist()
    good = np.array([s in SOURCES for s in src], dtype=np.bool_)
    return good, f"source must be one of {', '.join(SOURCES)}"


def _ohlc_checks(table: pa.Table, tf: Timeframe) -> list[Check]:
    """What trade, mark and index candles share: aligned open times, finite prices, high and
    low bracketing open and close."""
    ts = to_int64(table.column("ts"))
    o, h, lo, c = (_floats(table, n) for n in ("open", "high", "low", "close"))
    with np.errstate(invalid="ignore"):
        return [
            ((ts - tf.origin) % tf.ms == 0, f"open time is not aligned to {tf.name} candles (UTC)"),
            (
                np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c),
                "a price is not a finite number",
            ),
            (h >= np.maximum(o, c), "high is below open or close"),
            (lo <= np.minimum(o, c), "low is above open or close"),
        ]


def validate_candles(table: pa.Table, series: str, tf: Timeframe) -> None:
    """Aligned open times, finite prices, high/low bracketing open and close, volumes >= 0."""
    checks = _ohlc_checks(table, tf)
    v, qv = _floats(table, "volume"), _floats(table, "quote_volume")
    with np.errstate(invalid="ignore"):
        volumes_ok = np.isfinite(v) & np.isfinite(qv) & (v >= 0) & (qv >= 0)
    checks += [
        (volumes_ok, "volume is negative or not finite"),
        _source_check(table),
    ]
    _first_bad(table, series, "ts", checks)


def validate_funding(table: pa.Table, series: str) -> None:
    """Finite settled rates and a known source."""
    fr, rr = _floats(table, "funding_rate"), _floats(table, "realized_rate")
    checks = [
        (np.isfinite(fr) & np.isfinite(rr), "a funding rate is not a finite number"),
        _source_check(table),
    ]
    _first_bad(table, series, "funding_time", checks)


def validate_funding_live(table: pa.Table, series: str) -> None:
    """Finite rates (the predicted next rate may be absent) and a known source."""
    fr = _floats(table, "funding_rate")
    nxt = table.column("next_funding_rate")
    nxt_vals = np.where(present(nxt), to_float64(nxt), 0.0)  # absent is fine, NaN is not
    checks = [
        (np.isfinite(fr), "the funding rate is not a finite number"),
        (np.isfinite(nxt_vals), "the next funding rate is not a finite number"),
        _source_check(table),
    ]
    _first_bad(table, series, "ts", checks)


def validate_price_candles(table: pa.Table, series: str, tf: Timeframe) -> None:
    """Mark or index candles: as trade candles, without volumes (OKX sends none)."""
    _first_bad(table, series, "ts", [*_ohlc_checks(table, tf), _source_check(table)])


def validate_open_interest(table: pa.Table, series: str, tf: Timeframe) -> None:
    """Open interest at bar closes: instants aligned to the timeframe, finite values >= 0."""
    ts = to_int64(table.column("ts"))
    vals = [_floats(table, n) for n in ("oi_contracts", "oi_coin", "oi_usd")]
    with np.errstate(invalid="ignore"):
        finite = np.logical_and.reduce([np.isfinite(v) & (v >= 0) for v in vals])
        checks = [
            ((ts - tf.origin) % tf.ms == 0, f"instant is not a {tf.name} bar close (UTC)"),
            (finite, "an open-interest value is negative or not a finite number"),
            _source_check(table),
        ]
    _first_bad(table, series, "ts", checks)


def valid_together(
    batch: pa.Table,
    timeframes: set[Timeframe],
    validate: Callable[[pa.Table, str, Timeframe], None] = validate_candles,
) -> bool:
    """Whether a batch of one timeframe (a live batch) passes `validate` as a whole: one check
    for a thousand series (the checks are per row). False also when it cannot be checked that
    way; the caller then validates series by series, to name the bad one."""
    if len(timeframes) != 1 or batch.num_rows == 0:
        return False
    try:
        validate(batch, "", next(iter(timeframes)))
    except InvalidRecords:
        return False
    return True
