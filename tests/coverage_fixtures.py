"""Datasets for the coverage page, written through the real Store API (no Parquet by hand)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from okx_collector.models import Candle, FundingRate
from okx_collector.store import Store
from okx_collector.store.lifecycle import record_delisted
from okx_collector.timeframes import DAY_MS, HOUR_MS, MINUTE_MS, Timeframe

M1 = Timeframe.parse("1m")
M15 = Timeframe.parse("15m")
H1 = Timeframe.parse("1h")
H4 = Timeframe.parse("4h")
START = int(datetime(2026, 11, 28, tzinfo=UTC).timestamp() * 1000)
FUNDING_EVERY = 8 * HOUR_MS


def _candles(
    tf: Timeframe, start: int, end: int, skip: range | set[int] = range(0)
) -> list[Candle]:
    """Closed candles opening in [start, end), leaving out the opens in `skip` (ms)."""
    return [
        Candle(t, 1.0, 2.0, 0.5, 1.5, 3.0, 4.5, "backfill")
        for t in range(start, end, tf.ms)
        if t not in skip
    ]


def _funding(start: int, end: int) -> list[FundingRate]:
    """Settlements in [start, end] (one at `end` is already settled)."""
    return [FundingRate(t, 1e-4, 1e-4, "backfill") for t in range(start, end + 1, FUNDING_EVERY)]


@dataclass(frozen=True)
class DemoData:
    """What the demo leaves (two days of 1m and 15m for five pairs, funding for their swaps),
    with one gap, one stale series and one delisting to draw."""

    store: Store
    now_ms: int
    gap: range  # ETH-USDT 1m opens left out
    stale_from: int  # ADA-USDT 15m stops here
    delisted_ms: int  # DOT-USDT noticed gone


def demo_dataset(data_dir: Path) -> DemoData:
    store = Store(data_dir)
    now = START + 2 * DAY_MS
    gap = range(START + 30 * HOUR_MS, START + 33 * HOUR_MS, M1.ms)
    stale_from = now - 6 * HOUR_MS
    dot_ends = START + 40 * HOUR_MS
    for base in ("BTC", "ETH", "ADA", "DOT", "LINK"):
        inst = f"{base}-USDT"
        end = dot_ends if base == "DOT" else now
        store.write_candles(inst, M1, _candles(M1, START, end, gap if base == "ETH" else range(0)))
        m15_end = stale_from if base == "ADA" else end
        store.write_candles(inst, M15, _candles(M15, START, m15_end))
        store.write_funding(f"{inst}-SWAP", _funding(START, end))
    for inst in ("DOT-USDT", "DOT-USDT-SWAP"):
        record_delisted(data_dir, inst, dot_ends + 20 * MINUTE_MS)
    return DemoData(store, now, gap, stale_from, dot_ends + 20 * MINUTE_MS)


def thousand_series(data_dir: Path) -> tuple[Store, int]:
    """1,000 series over 30 days: 450 pairs at 1h and 4h, 100 funding series; every 7th pair
    has a gap, every 50th stopped early, every 90th is delisted; one 1h gap is a single candle,
    and one pair misses every 10th hour."""
    store = Store(data_dir)
    now = START + 30 * DAY_MS
    items: list[tuple[str, Timeframe, list[Candle]]] = []
    for k in range(450):
        inst = f"C{k:03d}-USDT"
        begin = START + (k % 10) * DAY_MS  # listed on different days
        end = now - 3 * DAY_MS if k % 50 == 0 else now - 5 * DAY_MS if k % 90 == 45 else now
        skip: range | set[int] = range(0)
        if k == 3:  # an illiquid pair: every 10th hour missing, one mark each
            skip = set(range(begin + 5 * H1.ms, end, 10 * H1.ms))
        elif k % 7 == 0:
            gap_start = START + (12 + k % 11) * DAY_MS
            skip = range(gap_start, gap_start + (H1.ms if k == 7 else (1 + k % 5) * DAY_MS))
        items.append((inst, H1, _candles(H1, begin, end, skip)))
        items.append((inst, H4, _candles(H4, begin, end, skip)))
    store.write_candles_many(items)
    for k in range(45, 450, 90):
        record_delisted(data_dir, f"C{k:03d}-USDT", now - 5 * DAY_MS + HOUR_MS)
    for k in range(100):
        store.write_funding(f"C{k:03d}-USDT-SWAP", _funding(START + k % 10 * DAY_MS, now))
    return store, now
