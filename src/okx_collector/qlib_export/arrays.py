"""Laying out candles and funding rates as qlib feature arrays, one value per calendar slot.

Pure (numpy only): no files, no Parquet. Every function works on a block of consecutive slots
[start, start + count * step), so the exporter can stream an instrument a month at a time and an
incremental export can recompute exactly the slots it rewrites.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import numpy.typing as npt

from okx_collector.qlib_export.digest import Sha256
from okx_collector.timeframes import HOUR_MS

CANDLE_FIELDS = ("open", "high", "low", "close", "volume", "quote_volume")
FIELDS = (*CANDLE_FIELDS, "vwap")  # every instrument has these feature files
FUNDING_FIELD = "funding_rate"  # only instruments with a funding series have this one
# OKX settles most perpetuals every 8 h; used as the horizon when only one settlement is known.
DEFAULT_FUNDING_INTERVAL_MS = 8 * HOUR_MS

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def _le(values: npt.NDArray[Any], dtype: str) -> memoryview:
    """The bytes of `values` as a little-endian `dtype`, without a copy when they already are."""
    return np.ascontiguousarray(values, dtype=dtype).data.cast("B")


@dataclass(frozen=True, slots=True)
class Candles:
    """A run of candles: open times (sorted, unique, aligned) and the six float64 columns."""

    ts: I64
    columns: Mapping[str, F64]  # keyed by CANDLE_FIELDS

    @classmethod
    def empty(cls) -> Candles:
        return cls(np.empty(0, np.int64), {f: np.empty(0, np.float64) for f in CANDLE_FIELDS})

    def __len__(self) -> int:
        return int(self.ts.size)

    def between(self, start: int, end: int) -> Candles:
        """The candles with open time in [start, end)."""
        lo, hi = np.searchsorted(self.ts, [start, end], side="left")
        return Candles(self.ts[lo:hi], {f: c[lo:hi] for f, c in self.columns.items()})


def vwap(volume: F64, quote_volume: F64) -> F64:
    """quote_volume / volume, NaN where volume is 0 (no trade: no average price)."""
    out = np.full(volume.shape, np.nan, dtype=np.float64)
    np.divide(quote_volume, volume, out=out, where=volume != 0)
    return out


def bar_block(candles: Candles, start: int, count: int, step: int) -> dict[str, F32]:
    """The FIELDS arrays of slots [start, start + count*step): float32, NaN where no candle.

    `candles` must lie inside the block.
    """
    idx = (candles.ts - start) // step
    if idx.size and (idx[0] < 0 or idx[-1] >= count):
        raise ValueError("candles outside the slot block")
    out: dict[str, F32] = {}
    values = dict(candles.columns)
    values["vwap"] = vwap(values["volume"], values["quote_volume"])
    for field in FIELDS:
        arr = np.full(count, np.nan, dtype=np.float32)
        arr[idx] = values[field]
        out[field] = arr
    return out


@dataclass(frozen=True, slots=True)
class Funding:
    """A settled funding history: settlement times (sorted, unique) and rates."""

    times: I64
    rates: F64

    def __len__(self) -> int:
        return int(self.times.size)

    @property
    def horizon(self) -> int | None:
        """The first ms at which the newest rate is no longer known to be the one in force.

        That is the next settlement, expected one interval (the last observed one) after the
        newest: past it, the rate in force has been settled but is not in the store yet.
        """
        if self.times.size == 0:
            return None
        last = int(self.times[-1])
        if self.times.size == 1:
            return last + DEFAULT_FUNDING_INTERVAL_MS
        return last + (last - int(self.times[-2]))

    def digest(self, rows: int | None = None) -> str:
        """sha256 of the first `rows` (default all) settlement times and rates."""
        n = len(self) if rows is None else rows
        h = hashlib.sha256(_le(self.times[:n], "<i8"))
        h.update(_le(self.rates[:n], "<f8"))
        return h.hexdigest()


def funding_block(funding: Funding, start: int, count: int, step: int) -> F32:
    """The settled rate in force at each slot of [start, start + count*step).

    A bar opening at or after a settlement time gets that settlement's rate (forward fill from
    each funding time); NaN before the first settlement and from the horizon on.
    """
    out = np.full(count, np.nan, dtype=np.float32)
    horizon = funding.horizon
    if horizon is None or count == 0:
        return out
    opens = start + step * np.arange(count, dtype=np.int64)
    which = np.searchsorted(funding.times, opens, side="right") - 1
    known = (which >= 0) & (opens < horizon)
    out[known] = funding.rates[which[known]]
    return out


@dataclass(frozen=True, slots=True)
class MonthSummary:
    """What one month of candles held when it was exported (a manifest entry)."""

    rows: int
    first: int  # open time of its first candle
    last: int  # open time of its last candle
    gaps: int  # runs of missing candles between its first and last
    sha256: str  # MonthAcc's checksum


class MonthAcc:
    """A month's summary built from consecutive runs of its candles, and resumable: its state
    after a prefix of the month (`save`) lets an incremental export add only the rows after it.

    The checksum is the sha256 of the seven column digests (`ts` as little-endian int64, then
    the six numbers as little-endian float64, in `CANDLE_FIELDS` order), each over the month's
    rows in time order: every column is hashed in place, and each can be extended by new rows.
    """

    def __init__(self, step: int, saved: Mapping[str, Any] | None = None) -> None:
        self._step = step  # bar length, ms
        self.rows = 0
        self.first = self.last = 0  # open times of the first and last candle (if rows)
        self.gaps = 0  # runs of missing candles between first and last
        self._hashes = [Sha256() for _ in range(1 + len(CANDLE_FIELDS))]  # ts, then the fields
        if saved is not None:
            self.rows, self.first, self.last, self.gaps = (
                int(saved[k]) for k in ("rows", "first", "last", "gaps")
            )
            states = saved["states"]
            if not isinstance(states, list) or len(states) != len(self._hashes):
                raise ValueError("not a saved month state")
            self._hashes = [Sha256.resume(str(x)) for x in states]

    def add(self, candles: Candles) -> MonthAcc:
        """Add candles that all open after the last one added."""
        n = len(candles)
        if n == 0:
            return self
        ts = candles.ts
        self.gaps += int(np.count_nonzero(np.diff(ts) != self._step))
        if self.rows:
            self.gaps += int(int(ts[0]) - self.last != self._step)
        else:
            self.first = int(ts[0])
        self.last = int(ts[-1])
        self.rows += n
        self._hashes[0].update(_le(ts, "<i8"))
        for h, field in zip(self._hashes[1:], CANDLE_FIELDS, strict=True):
            h.update(_le(candles.columns[field], "<f8"))
        return self

    def summary(self) -> MonthSummary | None:
        """The summary of the candles added so far, None when there are none."""
        if not self.rows:
            return None
        joined = b"".join(bytes.fromhex(h.hexdigest()) for h in self._hashes)
        sha = hashlib.sha256(joined).hexdigest()
        return MonthSummary(self.rows, self.first, self.last, self.gaps, sha)

    def save(self) -> dict[str, Any] | None:
        """What `MonthAcc(step, saved)` resumes from (None when the hash cannot be saved)."""
        states = [h.state() for h in self._hashes]
        if any(x is None for x in states):
            return None
        return {
            "rows": self.rows,
            "first": self.first,
            "last": self.last,
            "gaps": self.gaps,
            "states": states,
        }


def summarize(candles: Candles, step: int) -> MonthSummary | None:
    """The summary of a month's candles, None when it has none."""
    return MonthAcc(step).add(candles).summary()


def total_gaps(months: list[MonthSummary], step: int) -> int:
    """Runs of missing candles over consecutive month summaries (sorted by time)."""
    gaps = sum(m.gaps for m in months)
    gaps += sum(1 for a, b in pairwise(months) if b.first - a.last != step)
    return gaps
