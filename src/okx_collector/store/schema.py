"""The Parquet schemas of the dataset (DESIGN.md §4), in one place, and record -> table builders.

Times are int64 ms UTC, prices and rates float64. `inst_id` (and `timeframe` for candles) are
columns too, so that a file read on its own still says what it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from okx_collector.models import Candle, FundingObservation, FundingRate

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


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of series: its schema, key column, and the columns whose change is a change."""

    name: str  # "candles", "funding", "funding_live"
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


def _const(value: str, n: int) -> pa.Array:
    return pa.array([value] * n, type=pa.string())


def candles_table(inst_id: str, timeframe: str, candles: Sequence[Candle]) -> pa.Table:
    """Build a candle table (in the given order) from records."""
    n = len(candles)
    cols = list(zip(*candles, strict=True)) if n else [()] * 8
    return pa.Table.from_arrays(
        [
            pa.array(cols[0], type=pa.int64()),
            *(pa.array(cols[i], type=pa.float64()) for i in range(1, 7)),
            pa.array(cols[7], type=pa.string()),
            _const(inst_id, n),
            _const(timeframe, n),
        ],
        schema=CANDLE_SCHEMA,
    )


def funding_table(inst_id: str, rates: Sequence[FundingRate]) -> pa.Table:
    """Build a settled-funding table from records."""
    n = len(rates)
    cols = list(zip(*rates, strict=True)) if n else [()] * 4
    return pa.Table.from_arrays(
        [
            pa.array(cols[0], type=pa.int64()),
            pa.array(cols[1], type=pa.float64()),
            pa.array(cols[2], type=pa.float64()),
            pa.array(cols[3], type=pa.string()),
            _const(inst_id, n),
        ],
        schema=FUNDING_SCHEMA,
    )


def funding_live_table(inst_id: str, obs: Sequence[FundingObservation]) -> pa.Table:
    """Build a live-funding table from records."""
    n = len(obs)
    cols = list(zip(*obs, strict=True)) if n else [()] * 6
    return pa.Table.from_arrays(
        [
            pa.array(cols[0], type=pa.int64()),
            pa.array(cols[1], type=pa.int64()),
            pa.array(cols[2], type=pa.float64()),
            pa.array(cols[3], type=pa.int64()),
            pa.array(cols[4], type=pa.float64()),
            pa.array(cols[5], type=pa.string()),
            _const(inst_id, n),
        ],
        schema=FUNDING_LIVE_SCHEMA,
    )
