"""Merge a batch into a partition: dedupe on the key (later value wins), sort, count changes."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from okx_collector.store.arrow import BoolArray, Int64Array, int64s, present, to_float64, to_int64
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


def collapse(
    table: pa.Table, keys: Int64Array, value_columns: tuple[str, ...]
) -> tuple[Int64Array, BoolArray]:
    """One row per key of `table`, whose rows are in the order they were written (older
    first; each batch already unique per key), as if they had been merged one after another:
    the last value wins, but a row whose values equal the one it would replace is no change, so
    the earliest row of the final run of equal values is kept (with its `source`).

    Returns the indices of the rows kept, in key order, and per row whether its run reaches
    back to the first row of its key (`whole`): only then may an equal stored row stay.
    """
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.bool_)
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    same_key = sk[1:] == sk[:-1]
    same = np.zeros(sk.size, dtype=np.bool_)
    if same_key.any():
        idx = np.flatnonzero(same_key)
        prev = table.take(int64s(order[idx]))
        cur = table.take(int64s(order[idx + 1]))
        same[idx + 1] = _rows_equal(prev, cur, value_columns)
    positions = np.arange(sk.size)
    run_start = np.maximum.accumulate(np.where(same, 0, positions))
    key_start = np.maximum.accumulate(np.where(np.append(True, ~same_key), positions, 0))
    last_of_key = np.append(~same_key, True)
    chosen = run_start[last_of_key]
    return order[chosen].astype(np.int64), chosen == key_start[last_of_key]


def merge_collapsed(existing: pa.Table, rows: pa.Table, whole: BoolArray, kind: Kind) -> pa.Table:
    """`existing` (a partition: sorted, unique) with `collapse`d rows merged in by the same
    rule: a row whose run is `whole` and whose values equal the stored row's leaves it."""
    if whole.all():
        merged, _ = merge(existing, rows, kind)
        return existing if merged is None else merged
    forced = rows.take(int64s(np.flatnonzero(~whole)))
    gentle = rows.take(int64s(np.flatnonzero(whole)))
    merged, _ = merge(existing, gentle, kind)
    base = existing if merged is None else merged
    return dedupe_last(pa.concat_tables([base, forced]), kind.key).combine_chunks()


def dedupe_runs(table: pa.Table, kind: Kind) -> pa.Table:
    """`collapse` on the key column: the rows of several batches, oldest first."""
    keys = key_array(table, kind.key)
    if keys.size < 2 or bool(np.all(keys[1:] > keys[:-1])):
        return table
    return table.take(int64s(collapse(table, keys, kind.value_columns)[0]))
