"""What a series covers: first, last, rows, every gap, and how far behind the exchange it is.

Pure (numpy only): works on a sorted, unique int64 array of timestamps, so `status`, the
backfill and the tests can share it without touching files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from okx_collector.timeframes import Timeframe

TsArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Gap:
    """A run of missing items between two stored ones."""

    start: int  # first missing timestamp
    end: int  # the stored timestamp that ends the gap (exclusive)
    missing: int  # items missing in [start, end)

    @property
    def span_ms(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class Coverage:
    """Coverage of one series at exchange time `now_ms`."""

    first: int | None  # oldest stored timestamp
    last: int | None  # newest stored timestamp
    rows: int  # stored items
    step_ms: int | None  # expected spacing (candle length, or inferred funding interval)
    gaps: tuple[Gap, ...]  # interior gaps, oldest first
    age_ms: int | None  # time since the newest item closed (candles) or happened (funding)
    behind: int  # items due by `now_ms` after `last` that are not stored

    @property
    def gap_count(self) -> int:
        return len(self.gaps)

    @property
    def missing(self) -> int:
        """Items missing inside [first, last]."""
        return sum(g.missing for g in self.gaps)

    @property
    def largest_gap(self) -> Gap | None:
        """The gap with the most missing items (the oldest of equals)."""
        return max(self.gaps, key=lambda g: g.missing, default=None)


def infer_interval(ts: TsArray) -> int | None:
    """The typical spacing of `ts` (median of the differences); None with fewer than two."""
    if ts.size < 2:
        return None
    diffs = np.diff(ts)
    diffs = diffs[diffs > 0]
    if diffs.size == 0:
        return None
    return int(np.median(diffs))


def coverage(ts: TsArray, step_ms: int | None, now_ms: int, close_offset_ms: int) -> Coverage:
    """Coverage of sorted unique `ts` expected every `step_ms`.

    An item at `t` counts as done at `t + close_offset_ms` (a candle's length; 0 for events such
    as funding settlements): `age_ms` is measured from there. A spacing of `d` hides
    round(d / step) - 1 items, so irregular series (funding) are judged to the nearest slot.
    """
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size == 0:
        return Coverage(None, None, 0, step_ms, (), None, 0)
    first, last = int(ts[0]), int(ts[-1])
    age = now_ms - last - close_offset_ms
    if step_ms is None or step_ms <= 0:
        return Coverage(first, last, int(ts.size), None, (), age, 0)
    diffs = np.diff(ts)
    missing = (diffs + step_ms // 2) // step_ms - 1
    idx = np.flatnonzero(missing > 0)
    gaps = tuple(Gap(int(ts[i]) + step_ms, int(ts[i + 1]), int(missing[i])) for i in idx.tolist())
    behind = max(0, (now_ms - close_offset_ms - last) // step_ms)
    return Coverage(first, last, int(ts.size), step_ms, gaps, age, behind)


def candle_coverage(ts: TsArray, tf: Timeframe, now_ms: int) -> Coverage:
    """Coverage of candle open times: gaps in candles, age since the newest candle closed."""
    return coverage(ts, tf.ms, now_ms, tf.ms)


def funding_coverage(times: TsArray, now_ms: int, interval_ms: int | None = None) -> Coverage:
    """Coverage of settlement times, judged against `interval_ms` or the inferred interval."""
    times = np.asarray(times, dtype=np.int64)
    step = interval_ms if interval_ms is not None else infer_interval(times)
    return coverage(times, step, now_ms, 0)


def with_lost_start(cov: Coverage, expected_first: int | None) -> Coverage:
    """`cov` with the items between `expected_first` (where the series is known to start, see
    `Store.expected_first_ts`) and its first stored one counted as a gap: a damaged first
    partition set aside lost them, they are not absent from the exchange."""
    if expected_first is None or cov.first is None or not cov.step_ms:
        return cov
    missing = (cov.first - expected_first) // cov.step_ms
    if missing <= 0:
        return cov
    gap = Gap(cov.first - missing * cov.step_ms, cov.first, int(missing))
    return replace(cov, gaps=(gap, *cov.gaps))
