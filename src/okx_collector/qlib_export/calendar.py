"""Calendar arithmetic for the qlib export: slot timestamps, their text form, and UTC months.

Pure (numpy only). A qlib calendar line is `YYYY-MM-DD HH:MM:SS` plus a newline: 20 bytes for
every date from year 1000 to 9999, so slot `i` of a calendar file starts at byte `20 * i`. That
fixed width is what lets an incremental export append to (or cut) a calendar in place.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

LINE_BYTES = 20  # len("YYYY-MM-DD HH:MM:SS\n")

_ZERO = ord("0")
# Byte positions of each two-digit group in a line, and of the separators.
_SEPARATORS = ((4, "-"), (7, "-"), (10, " "), (13, ":"), (16, ":"), (19, "\n"))


def _put_digits(
    out: npt.NDArray[np.uint8], col: int, values: npt.NDArray[np.int64], width: int
) -> None:
    for k in range(width - 1, -1, -1):
        out[:, col + k] = _ZERO + values % 10
        values = values // 10


def format_lines(ts_ms: npt.NDArray[np.int64]) -> bytes:
    """The calendar lines (`YYYY-MM-DD HH:MM:SS\\n`, UTC) of ms timestamps, as one bytes object.

    Vectorised: about 30 times faster than `strftime` per row, which matters for a year of 1m
    bars (525,600 lines).
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    seconds = ts // 1000
    days = (seconds // 86_400).astype("datetime64[D]")
    months = days.astype("datetime64[M]")
    month_index = months.astype(np.int64)  # months since 1970-01
    year = 1970 + month_index // 12
    month = month_index % 12 + 1
    day = (days - months).astype(np.int64) + 1
    second_of_day = seconds % 86_400
    out = np.empty((ts.size, LINE_BYTES), dtype=np.uint8)
    _put_digits(out, 0, year, 4)
    _put_digits(out, 5, month, 2)
    _put_digits(out, 8, day, 2)
    _put_digits(out, 11, second_of_day // 3600, 2)
    _put_digits(out, 14, second_of_day // 60 % 60, 2)
    _put_digits(out, 17, second_of_day % 60, 2)
    for col, char in _SEPARATORS:
        out[:, col] = ord(char)
    return out.tobytes()


def format_time(ts_ms: int) -> str:
    """One timestamp as qlib writes it: `YYYY-MM-DD HH:MM:SS` (UTC), as `format_lines` does.

    (`time.strftime`: ten times faster than a one-row `format_lines`, for the hundreds of
    times an export formats an instrument's first and last bar.)"""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ms // 1000))


def slot_times(first: int, count: int, step: int) -> npt.NDArray[np.int64]:
    """The open times of `count` consecutive bars of length `step` from `first`."""
    return first + step * np.arange(count, dtype=np.int64)


def calendar_bytes(first: int, count: int, step: int) -> bytes:
    """The calendar file content of `count` bars of length `step` from `first`."""
    return format_lines(slot_times(first, count, step))


@dataclass(frozen=True, slots=True, order=True)
class Month:
    """One UTC calendar month: the unit the exporter reads, checks and remembers."""

    start: int  # first ms inside
    end: int  # first ms after
    key: str  # "YYYY-MM"


def _month(index: int) -> Month:
    """The month `index` months after 1970-01."""
    start = np.array([index, index + 1], dtype="datetime64[M]").astype("datetime64[ms]")
    lo, hi = (int(x) for x in start.astype(np.int64))
    return Month(lo, hi, f"{1970 + index // 12:04d}-{index % 12 + 1:02d}")


def month_index(ts_ms: int) -> int:
    """Months since 1970-01 of the month holding `ts_ms`."""
    return int(np.datetime64(ts_ms, "ms").astype("datetime64[M]").astype(np.int64))


def month_of(ts_ms: int) -> Month:
    """The UTC month holding `ts_ms`."""
    return _month(month_index(ts_ms))


def months_between(first: int, last: int) -> list[Month]:
    """Every UTC month from the one holding `first` to the one holding `last`, inclusive."""
    return [_month(i) for i in range(month_index(first), month_index(last) + 1)]


def calendar_chunks(
    first: int, lo: int, hi: int, step: int, chunk: int = 1 << 18
) -> Iterator[bytes]:
    """The lines of calendar slots [lo, hi) of a calendar starting at `first`, in blocks."""
    for start in range(lo, hi, chunk):
        yield calendar_bytes(first + start * step, min(chunk, hi - start), step)
