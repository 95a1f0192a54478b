"""Coverage arithmetic: gaps, missing counts, largest gap, age and backlog."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from okx_collector.store.coverage import (
    Gap,
    candle_coverage,
    coverage,
    funding_coverage,
    infer_interval,
)
from okx_collector.timeframes import HOUR_MS, MINUTE_MS, Timeframe, missing_ranges

M15 = Timeframe.parse("15m")
W1 = Timeframe.parse("1w")


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def arr(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_empty() -> None:
    cov = candle_coverage(arr([]), M15, ms("2026-01-01T00:00:00"))
    assert (cov.first, cov.last, cov.rows, cov.gap_count, cov.missing) == (None, None, 0, 0, 0)
    assert cov.largest_gap is None and cov.age_ms is None and cov.behind == 0


def test_one_row_age_and_behind() -> None:
    t = ms("2026-01-01T00:00:00")
    # 00:00 candle closes at 00:15; at 00:20 it is 5 minutes old and nothing else is due.
    cov = candle_coverage(arr([t]), M15, t + 20 * MINUTE_MS)
    assert (cov.first, cov.last, cov.rows, cov.gaps) == (t, t, 1, ())
    assert cov.age_ms == 5 * MINUTE_MS and cov.behind == 0
    # At 01:00 the 00:15, 00:30 candles have closed and 00:45 has just closed: 3 due.
    later = candle_coverage(arr([t]), M15, t + HOUR_MS)
    assert later.age_ms == 45 * MINUTE_MS and later.behind == 3
    # A candle still in progress at `now` is not "due".
    assert candle_coverage(arr([t]), M15, t + 29 * MINUTE_MS).behind == 0


def test_gaps_missing_and_largest() -> None:
    t = ms("2026-01-01T00:00:00")
    step = M15.ms
    ts = [t, t + step, t + 4 * step, t + 5 * step, t + 9 * step, t + 11 * step]
    cov = candle_coverage(arr(ts), M15, t + 12 * step)
    assert cov.gaps == (
        Gap(t + 2 * step, t + 4 * step, 2),
        Gap(t + 6 * step, t + 9 * step, 3),
        Gap(t + 10 * step, t + 11 * step, 1),
    )
    assert (cov.gap_count, cov.missing, cov.rows) == (3, 6, 6)
    assert cov.largest_gap == Gap(t + 6 * step, t + 9 * step, 3)
    assert cov.largest_gap.span_ms == 3 * step
    # It agrees with timeframes.missing_ranges over [first, last].
    ranges = list(missing_ranges(ts, ts[0], ts[-1], M15))
    assert ranges == [(g.start, g.end) for g in cov.gaps]


def test_gap_at_start_of_month_boundary() -> None:
    # The last January candle and the first two February candles are missing.
    jan_last = ms("2026-01-31T23:45:00")
    ts = [jan_last - M15.ms, ms("2026-02-01T00:30:00")]
    cov = candle_coverage(arr(ts), M15, ms("2026-02-01T01:00:00"))
    assert cov.gaps == (Gap(jan_last, ms("2026-02-01T00:30:00"), 3),)


def test_largest_gap_ties_go_to_the_oldest() -> None:
    step = M15.ms
    cov = candle_coverage(arr([0, 2 * step, 4 * step]), M15, 5 * step)
    assert cov.largest_gap == Gap(step, 2 * step, 1)


def test_weekly_candles() -> None:
    monday = ms("2026-01-05T00:00:00")
    assert W1.is_aligned(monday)
    cov = candle_coverage(arr([monday, monday + 2 * W1.ms]), W1, monday + 3 * W1.ms + 1)
    assert cov.missing == 1 and cov.behind == 0


def test_funding_interval_inferred_from_median() -> None:
    h8 = 8 * HOUR_MS
    t = ms("2026-01-01T00:00:00")
    times = arr([t, t + h8, t + 2 * h8, t + 4 * h8, t + 5 * h8])
    assert infer_interval(times) == h8
    cov = funding_coverage(times, t + 5 * h8 + HOUR_MS)
    assert cov.step_ms == h8 and cov.gaps == (Gap(t + 3 * h8, t + 4 * h8, 1),)
    assert cov.age_ms == HOUR_MS and cov.behind == 0
    assert funding_coverage(times, t + 7 * h8).behind == 2
    # An explicit interval overrides the inference (a 4h instrument).
    assert funding_coverage(times, t + 5 * h8, 4 * HOUR_MS).missing == 1 + 1 + 3 + 1


def test_funding_single_row_has_no_interval() -> None:
    cov = funding_coverage(arr([1_000]), 5_000)
    assert cov.step_ms is None and cov.gaps == () and cov.age_ms == 4_000 and cov.behind == 0
    assert infer_interval(arr([])) is None


@pytest.mark.parametrize("step", [1, 60_000, 3_600_000])
def test_generic_coverage_matches_a_slow_model(step: int) -> None:
    rng = np.random.default_rng(step)
    present = np.flatnonzero(rng.random(500) < 0.7).astype(np.int64) * step
    cov = coverage(present, step, int(present[-1]) + step, 0)
    expected_missing = int((present[-1] - present[0]) // step + 1 - present.size)
    assert cov.missing == expected_missing
    assert cov.rows == present.size
