"""Merge a batch into a partition: dedupe on the key (later value wins), sort, count changes."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from okx_collector.store.arrow import Int64Array, int64s, present, to_float64, to_int64
from okx_collector.store.schema import Kind


def key_array(table: pa.Table, key: str) -> Int64Array:
    """The key column as an int64 numpy array (zero-copy for a single chunk)."""
    return to_int64(table.column(key))


def dedupe_last(table: pa.Table, key: str) -> pa.Table:
    """Sort `table` by `key`, keeping only the last row given for each key value."""
    keys = key_array(table, key)
    if keys.size < 2:
        return table
    if bool(np.all(keys[1:] > keys[:-1])):
        return table
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    last_of_run = np.append(sk[1:] != sk[:-1], True)
    return table.take(int64s(order[last_of_run]))


def _rows_equal(old: pa.Table, new: pa.Table, columns: tuple[str, ...]) -> npt.NDArray[np.bool_]:
    """Row-wise equality of two equally long tables over `columns` (null == null, NaN == NaN)."""
    same: npt.NDArray[np.bool_] = np.ones(old.num_rows, dtype=np.bool_)
    for name in columns:
        a, b = old.column(name), new.column(name)
        has_a, has_b = present(a), present(b)
        if pa.types.is_floating(a.type):
            x, y = to_float64(a), to_float64(b)
            eq = (x == y) | (np.isnan(x) & np.isnan(y))
        else:
            eq = to_int64(a) == to_int64(b)
        same &= (has_a & has_b & eq) | (~has_a & ~has_b)
    return same


def merge(existing: pa.Table, new: pa.Table, kind: Kind) -> tuple[pa.Table | None, int]:
    """Merge sorted-unique `new` into sorted-unique `existing`.

    Returns (merged table, rows added or changed), or (None, 0) when `new` changes nothing, so the
    caller can skip rewriting the file. A row whose value columns equal the stored ones is not a
    change, and the stored row (with its `source`) is kept.
    """
    if new.num_rows == 0:
        return None, 0
    e = key_array(existing, kind.key)
    n = key_array(new, kind.key)
    if e.size == 0 or n[0] > e[-1]:
        merged = pa.concat_tables([existing, new]) if e.size else new
        return merged.combine_chunks(), int(n.size)
    pos = np.searchsorted(e, n)
    inside = pos < e.size
    found = np.zeros(n.size, dtype=np.bool_)
    found[inside] = e[pos[inside]] == n[inside]
    changed = np.zeros(n.size, dtype=np.bool_)
    if found.any():
        found_idx = np.flatnonzero(found)
        old_rows = existing.take(int64s(pos[found_idx]))
        new_rows = new.take(int64s(found_idx))
        changed[found_idx] = ~_rows_equal(old_rows, new_rows, kind.value_columns)
    take_new = ~found | changed
    count = int(take_new.sum())
    if count == 0:
        return None, 0
    keep_old = np.ones(e.size, dtype=np.bool_)
    keep_old[pos[changed]] = False
    merged = pa.concat_tables(
        [
            existing.take(int64s(np.flatnonzero(keep_old))),
            new.take(int64s(np.flatnonzero(take_new))),
        ]
    ).combine_chunks()
    order = np.argsort(key_array(merged, kind.key), kind="stable")
    return merged.take(int64s(order)), count
