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

Each file is built whole in memory (4 bytes a slot) and written only when its checksum differs
from the manifest's (so an unchanged export rewrites nothing); not patched in place like the
candle fields yet: an export that extends the calendar rewrites these files in full.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import numpy.typing as npt

from okx_collector.qlib_export.files import file_size, header, remove, write_atomic
from okx_collector.qlib_export.instrument import Result, Target
from okx_collector.qlib_export.manifest import FileEntry, InstrumentEntry, feature_path
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


def arrays(
    store: Store, tf: Timeframe, inst_id: str, first: int, last: int, ids: Mapping[str, set[str]]
) -> dict[str, npt.NDArray[np.float32]]:
    """field -> one float32 value per slot of [first, last] (NaN where nothing is stored)."""
    step = tf.ms
    bars = (last - first) // step + 1
    out: dict[str, npt.NDArray[np.float32]] = {}
    for group, present in ids.items():
        kind, fields = GROUPS[group]
        values = {f: np.full(bars, np.nan, dtype=np.float32) for f, _ in fields}
        sid = source_id(group, inst_id)
        if sid is not None and sid in present:
            shift = step if kind is OPEN_INTEREST else 0  # a close is stored at the next open
            table = store.read_kind(kind, sid, tf, first + shift, last + step + shift)
            ts = to_int64(table.column("ts"))
            slots = (ts - shift - first) // step
            for f, column in fields:
                col = to_float64(table.column(column))
                values[f][slots] = col.astype(np.float32)
        out.update(values)
    return out


def write(
    out: Path,
    tf: Timeframe,
    inst_id: str,
    start_index: int,
    values: Mapping[str, npt.NDArray[np.float32]],
    old: Mapping[str, FileEntry],
) -> tuple[dict[str, FileEntry], bool]:
    """Write the files whose bytes differ from `old` (relative path -> entry); remove those of
    groups no longer exported. Returns the entries and whether any file changed."""
    entries: dict[str, FileEntry] = {}
    changed = False
    for field, array in values.items():
        rel = feature_path(inst_id, field, tf.qlib_freq)
        data = header(start_index) + np.ascontiguousarray(array, dtype="<f4").tobytes()
        digest = hashlib.sha256(data).hexdigest()
        before = old.get(rel)
        if before is not None and before.sha256 == digest and file_size(out / rel) == len(data):
            entries[rel] = before
            continue
        entries[rel] = write_atomic(out / rel, data)
        changed = True
    for rel in set(old) - set(entries):
        remove(out / rel)
        changed = True
    return dict(sorted(entries.items())), changed


def with_fields(
    store: Store,
    out: Path,
    tf: Timeframe,
    ids: Mapping[str, set[str]],
    t: Target,
    result: Result,
    old: InstrumentEntry | None,
) -> Result:
    """`result` (the candle fields of `t`, written) with the derived fields written too."""
    values = arrays(store, tf, t.inst_id, t.first, t.last, ids)
    if not values and (old is None or not old.derived):
        return result
    entries, changed = write(out, tf, t.inst_id, t.start_index, values, old.derived if old else {})
    entry = dataclasses.replace(result.entry, derived=entries)
    action = "appended" if changed and result.action == "unchanged" else result.action
    return Result(entry, action, result.slots)
