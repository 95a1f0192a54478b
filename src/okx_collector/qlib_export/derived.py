"""qlib fields of mark-price candles, index candles and open interest, per exported instrument.

    $mark_open $mark_high $mark_low $mark_close      the perpetual's mark-price candle
    $index_open $index_high $index_low $index_close  the candle of the index behind it
    $open_interest                                   open interest in contracts at the bar's close

A group of fields is written for every instrument of the timeframe once the store holds any
series of its kind at that timeframe (NaN where nothing is stored for the instrument, so that a
qlib expression over many instruments never misses a field). A spot pair takes its linear
perpetual's mark and open interest (`BTC-USDT` -> `BTC-USDT-SWAP`, as it takes its funding) and
its own index (`BTC-USDT`); a perpetual its own mark and open interest and its family's index.

The slot of the bar opening at `t` holds the mark/index candle opening at `t`, and the open
interest at `t + step` (its close, as `$close` is the last trade before it).

This module says what the fields hold; `derived_writer` writes them (in full, or appended to),
its `listing.Listing`s telling which stored ranges changed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from okx_collector.store.arrow import to_float64, to_int64
from okx_collector.store.schema import INDEX_CANDLES, MARK_CANDLES, OPEN_INTEREST, Kind
from okx_collector.store.store import Store
from okx_collector.timeframes import Timeframe

_PRICES = ("open", "high", "low", "close")
# group -> (kind, (field, stored column) ...)
GROUPS: dict[str, tuple[Kind, tuple[tuple[str, str], ...]]] = {
    "mark": (MARK_CANDLES, tuple((f"mark_{c}", c) for c in _PRICES)),
    "index": (INDEX_CANDLES, tuple((f"index_{c}", c) for c in _PRICES)),
    "oi": (OPEN_INTEREST, (("open_interest", "oi_contracts"),)),
}
DERIVED_FIELDS = tuple(f for _, fields in GROUPS.values() for f, _ in fields)


def stored_ids(store: Store, tf: Timeframe) -> dict[str, set[str]]:
    """group -> the ids with a series of that kind at `tf` (groups with none left out)."""
    out = {}
    for group, (kind, _) in GROUPS.items():
        ids = {i for i, name in store.list_kind_series(kind) if name == tf.name}
        if ids:
            out[group] = ids
    return out


def source_id(group: str, inst_id: str) -> str | None:
    """The series of `group` that applies to `inst_id` (None: futures, options)."""
    parts = inst_id.split("-")
    if len(parts) == 2:  # a spot pair
        return inst_id if group == "index" else f"{inst_id}-SWAP"
    if len(parts) == 3 and parts[2] == "SWAP":
        return inst_id.removesuffix("-SWAP") if group == "index" else inst_id
    return None


def shift(group: str, tf: Timeframe) -> int:
    """Stored time minus slot time: open interest is stored at the bar's close."""
    return tf.ms if GROUPS[group][0] is OPEN_INTEREST else 0


def values(
    store: Store, tf: Timeframe, group: str, sid: str | None, lo: int, hi: int
) -> dict[str, npt.NDArray[np.float32]]:
    """field -> one float32 value per slot of [lo, hi) (bar open times; NaN where nothing is
    stored, everywhere if `sid` is None)."""
    step = tf.ms
    kind, fields = GROUPS[group]
    bars = (hi - lo) // step
    out = {f: np.full(bars, np.nan, dtype=np.float32) for f, _ in fields}
    if sid is None or bars <= 0:
        return out
    s = shift(group, tf)
    columns = ["ts", *(c for _, c in fields)]
    table = store.read_kind(kind, sid, tf, lo + s, hi + s, columns=columns)
    slots = (to_int64(table.column("ts")) - s - lo) // step
    for f, column in fields:
        out[f][slots] = to_float64(table.column(column)).astype(np.float32)
    return out
