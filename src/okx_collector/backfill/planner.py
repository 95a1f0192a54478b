"""Which pages to request: the store's missing candles, cut into 300-bar windows (pure).

Every page is one exact window [start, end) so pages are independent and can be fetched
concurrently, in any order, and retried alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from okx_collector.timeframes import Timeframe, missing_ranges

PAGE_BARS = 300
RECENT_BARS = 1400  # market/candles holds the latest 1,440 bars; keep a margin as time moves on


@dataclass(frozen=True, slots=True)
class Page:
    """One request's worth of candles: opens in [start, end)."""

    start: int
    end: int
    recent: bool  # within the latest bars: use market/candles (its own, higher rate limit)
    prepend: bool  # older than anything stored: fetched newest first, stops at the listing date

    def bars(self, tf: Timeframe) -> int:
        return (self.end - self.start) // tf.ms


def recent_from(tf: Timeframe, now: int) -> int:
    """Oldest candle open that `market/candles` still serves (with a margin): pages starting at or
    after it use that endpoint, whose rate limit is separate and higher."""
    return tf.floor(now) - RECENT_BARS * tf.ms


def closed_end(tf: Timeframe, until: int, now: int) -> int:
    """Exclusive bound on candle opens: before `until`, and closed at exchange time `now`."""
    return min(tf.ceil(until), tf.floor(now))


def plan_pages(
    present: Sequence[int] | npt.NDArray[np.int64], tf: Timeframe, since: int, until: int, now: int
) -> list[Page]:
    """Pages covering every missing candle open in [since, until) that has closed by `now`.

    `present` is the sorted list of stored candle opens. Prepend pages come newest first, so
    that the runner can stop at the instrument's listing date; the others oldest first.
    """
    end = closed_end(tf, until, now)
    start = tf.ceil(since)
    if start >= end:
        return []
    first_stored = present[0] if len(present) else None
    recent_start = recent_from(tf, now)
    prepend: list[Page] = []
    others: list[Page] = []
    for gap_start, gap_end in missing_ranges(present, start, end, tf):
        cuts = [gap_start]
        if gap_start < recent_start < gap_end:
            cuts.append(recent_start)
        cuts.append(gap_end)
        for lo, hi in itertools.pairwise(cuts):
            for page_start in range(lo, hi, PAGE_BARS * tf.ms):
                page_end = min(hi, page_start + PAGE_BARS * tf.ms)
                is_prepend = first_stored is None or page_end <= first_stored
                page = Page(page_start, page_end, page_start >= recent_start, is_prepend)
                (prepend if is_prepend else others).append(page)
    prepend.reverse()
    return prepend + others
