"""The Parquet schemas of the dataset (DESIGN.md §4), in one place, and record -> table builders.

Times are int64 ms UTC, prices and rates float64. `inst_id` (and `timeframe` for candles) are
columns too, so that a file read on its own still says what it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from okx_collector.models import Candle, FundingObservation, FundingRate, OpenInterest, PriceCandle
from okx_collector.store.arrow import float64s, int64s, repeated, strings

CANDLE_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.int64(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("quote_volume", pa.float64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("inst_id", pa.string(), nullable=False),
        pa.field("timeframe", pa.string(), nullable=False),
    ]
)

FUNDING_SCHEMA = pa.schema(
    [
        pa.field("funding_time", pa.int64(), nullable=False),
        pa.field("funding_rate", pa.float64(), nullable=False),
        pa.field("realized_rate", pa.float64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("inst_id", pa.string(), nullable=False),
    ]
)

FUNDING_LIVE_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.int64(), nullable=False),
        pa.field("funding_time", pa.int64(), nullable=False),
        pa.field("funding_rate", pa.float64(), nullable=False),
        pa.field("next_funding_time", pa.int64(), nullable=True),
        pa.field("next_funding_rate", pa.float64(), nullable=True),
        pa.field("source", pa.string(), nullable=False),
        pa.field("inst_id", pa.string(), nullable=False),
    ]
)


# Mark-price and index candles: OKX sends no volume. `inst_id` is the perpetual (mark) or the
# index id (`BTC-USDT`, index candles).
PRICE_CANDLE_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.int64(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("inst_id", pa.string(), nullable=False),
        pa.field("timeframe", pa.string(), nullable=False),
    ]
)

# Open interest of a perpetual sampled at the bar closes of a timeframe: `ts` is the instant the
# values were in force (a bar's close = the next bar's open time, aligned to the timeframe).
OPEN_INTEREST_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.int64(), nullable=False),
        pa.field("oi_contracts", pa.float64(), nullable=False),
        pa.field("oi_coin", pa.float64(), nullable=False),
        pa.field("oi_usd", pa.float64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("inst_id", pa.string(), nullable=False),
        pa.field("timeframe", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of series: its schema, key column, and the columns whose change is a change."""

    name: str  # "candles", "funding", ...: the journal folder and the dataset's top folder
    schema: pa.Schema
    key: str  # unique, sorted column
    # Columns compared when the same key is written again. `source` is provenance, not data:
    # re-fetching an identical candle over REST must not rewrite a file written from websockets.
    value_columns: tuple[str, ...]


CANDLES = Kind(
    "candles",
    CANDLE_SCHEMA,
    "ts",
    ("open", "high", "low", "close", "volume", "quote_volume"),
)
FUNDING = Kind("funding", FUNDING_SCHEMA, "funding_time", ("funding_rate", "realized_rate"))
FUNDING_LIVE = Kind(
    "funding_live",
    FUNDING_LIVE_SCHEMA,
    "ts",
    ("funding_time", "funding_rate", "next_funding_time", "next_funding_rate"),
)

_PRICES = ("open", "high", "low", "close")
MARK_CANDLES = Kind("mark_candles", PRICE_CANDLE_SCHEMA, "ts", _PRICES)
INDEX_CANDLES = Kind("index_candles", PRICE_CANDLE_SCHEMA, "ts", _PRICES)
OPEN_INTEREST = Kind(
    "open_interest", OPEN_INTEREST_SCHEMA, "ts", ("oi_contracts", "oi_coin", "oi_usd")
)
# The kinds kept per (series id, timeframe) like trade candles (`store.derived`).
TIMEFRAME_KINDS: tuple[Kind, ...] = (MARK_CANDLES, INDEX_CANDLES, OPEN_INTEREST)
ALL_KINDS: tuple[Kind, ...] = (CANDLES, FUNDING, FUNDING_LIVE, *TIMEFRAME_KINDS)


def _ints(values: Sequence[int]) -> pa.Array:
    return int64s(np.array(values, dtype=np.int64))


def _floats(values: Sequence[float]) -> pa.Array:
    return float64s(np.array(values, dtype=np.float64))


def candles_table(inst_id: str, timeframe: str, candles: Sequence[Candle]) -> pa.Table:
    """Build a candle table (in the given order) from records."""
    return candles_tables([(inst_id, timeframe, candles)])[0]


def candles_tables(items: Sequence[tuple[str, str, Sequence[Candle]]]) -> list[pa.Table]:
    """`candles_table` of each (inst_id, timeframe, candles), built from one set of arrays:
    a live job's batch of a thousand one-row tables costs a tenth of building each alone."""
    rows = [c for _, _, candles in items for c in candles]
    cols = list(zip(*rows, strict=True)) if rows else [()] * 8
    shared = [_ints(cols[0]), *(_floats(cols[i]) for i in range(1, 7)), strings(cols[7])]
    tables = []
    lo = 0
    for inst_id, timeframe, candles in items:
        n = len(candles)
        arrays = [a.slice(lo, n) for a in shared]
        arrays += [repeated(inst_id, n), repeated(timeframe, n)]
        tables.append(pa.Table.from_arrays(arrays, schema=CANDLE_SCHEMA))
        lo += n
    return tables


def candles_batch(items: Sequence[tuple[str, str, Sequence[Candle]]]) -> pa.Table:
    """Every row of (inst_id, timeframe, candles) items in one table, one array per column: what
    a journal file holds. A live close of a thousand one-row series costs about 1 ms this way,
    where a thousand `candles_tables` joined cost 35 ms on the writer's thread (holding the GIL
    while the event loop still parses the close's confirm pushes)."""
    return _series_batch(items, 6, CANDLE_SCHEMA)


def price_candles_batch(items: Sequence[tuple[str, str, Sequence[PriceCandle]]]) -> pa.Table:
    """`candles_batch` for mark or index candles."""
    return _series_batch(items, 4, PRICE_CANDLE_SCHEMA)


def open_interest_batch(items: Sequence[tuple[str, str, Sequence[OpenInterest]]]) -> pa.Table:
    """`candles_batch` for open interest."""
    return _series_batch(items, 3, OPEN_INTEREST_SCHEMA)


def _series_batch(
    items: Sequence[tuple[str, str, Sequence[tuple[Any, ...]]]], floats: int, schema: pa.Schema
) -> pa.Table:
    """One table of records laid out as `ts`, `floats` float columns, `source` (the schemas of
    the kinds kept per series and timeframe), then each row's series id and timeframe."""
    rows = [r for _, _, records in items for r in records]
    cols = list(zip(*rows, strict=True)) if rows else [()] * (floats + 2)
    ids = [series_id for series_id, _, records in items for _ in records]
    tfs = [timeframe for _, timeframe, records in items for _ in records]
    arrays = [_ints(cols[0]), *(_floats(cols[i]) for i in range(1, floats + 1))]
    arrays += [strings(cols[floats + 1]), strings(ids), strings(tfs)]
    return pa.Table.from_arrays(arrays, schema=schema)


def funding_table(inst_id: str, rates: Sequence[FundingRate]) -> pa.Table:
    """Build a settled-funding table from records."""
    n = len(rates)
    cols = list(zip(*rates, strict=True)) if n else [()] * 4
    return pa.Table.from_arrays(
        [
            _ints(cols[0]),
            _floats(cols[1]),
            _floats(cols[2]),
            strings(cols[3]),
            repeated(inst_id, n),
        ],
        schema=FUNDING_SCHEMA,
    )


def funding_live_table(inst_id: str, obs: Sequence[FundingObservation]) -> pa.Table:
    """Build a live-funding table from records (the next funding time and rate may be None)."""
    n = len(obs)
    cols = list(zip(*obs, strict=True)) if n else [()] * 6
    return pa.Table.from_arrays(
        [
            _ints(cols[0]),
            _ints(cols[1]),
            _floats(cols[2]),
            int64s(cols[3]),
            float64s(cols[4]),
            strings(cols[5]),
            repeated(inst_id, n),
        ],
        schema=FUNDING_LIVE_SCHEMA,
    )


def price_candles_table(inst_id: str, timeframe: str, candles: Sequence[PriceCandle]) -> pa.Table:
    """Build a mark- or index-candle table (in the given order) from records."""
    n = len(candles)
    cols = list(zip(*candles, strict=True)) if n else [()] * 6
    return pa.Table.from_arrays(
        [
            _ints(cols[0]),
            *(_floats(cols[i]) for i in range(1, 5)),
            strings(cols[5]),
            repeated(inst_id, n),
            repeated(timeframe, n),
        ],
        schema=PRICE_CANDLE_SCHEMA,
    )


def open_interest_table(inst_id: str, timeframe: str, rows: Sequence[OpenInterest]) -> pa.Table:
    """Build an open-interest table (in the given order) from records."""
    n = len(rows)
    cols = list(zip(*rows, strict=True)) if n else [()] * 5
    return pa.Table.from_arrays(
        [
            _ints(cols[0]),
            *(_floats(cols[i]) for i in range(1, 4)),
            strings(cols[4]),
            repeated(inst_id, n),
            repeated(timeframe, n),
        ],
        schema=OPEN_INTEREST_SCHEMA,
    )
