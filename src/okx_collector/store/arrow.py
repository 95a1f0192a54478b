"""numpy <-> Arrow conversions that never import pandas.

pyarrow's `pa.array()` and `Array.to_numpy()` probe for pandas on first use, and so import it
whenever it is installed (qlib installs it): 40 MB of a live job's memory for a library the job
never calls. These helpers build arrays from their buffers and read buffers back instead, which
is also faster for the small batches a live job writes. Only the types the store uses are
handled: int64, float64 (both possibly nullable), bool results, utf-8 strings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


def _validity(present: BoolArray) -> tuple[pa.Buffer | None, int]:
    """An Arrow validity bitmap (None when every value is present) and the null count."""
    nulls = int(present.size - np.count_nonzero(present))
    if nulls == 0:
        return None, 0
    return pa.py_buffer(np.packbits(present, bitorder="little")), nulls


def int64s(values: Sequence[int | None] | Int64Array) -> pa.Array:
    """An int64 array; None becomes null."""
    if isinstance(values, np.ndarray):
        data = np.ascontiguousarray(values, dtype=np.int64)
        return pa.Array.from_buffers(pa.int64(), data.size, [None, pa.py_buffer(data)])
    present = np.fromiter((v is not None for v in values), dtype=np.bool_, count=len(values))
    data = np.fromiter((0 if v is None else v for v in values), dtype=np.int64, count=len(values))
    bitmap, nulls = _validity(present)
    return pa.Array.from_buffers(pa.int64(), data.size, [bitmap, pa.py_buffer(data)], nulls)


def float64s(values: Sequence[float | None] | Float64Array) -> pa.Array:
    """A float64 array; None becomes null (NaN stays NaN, a value)."""
    if isinstance(values, np.ndarray):
        data = np.ascontiguousarray(values, dtype=np.float64)
        return pa.Array.from_buffers(pa.float64(), data.size, [None, pa.py_buffer(data)])
    present = np.fromiter((v is not None for v in values), dtype=np.bool_, count=len(values))
    data = np.fromiter(
        (0.0 if v is None else v for v in values), dtype=np.float64, count=len(values)
    )
    bitmap, nulls = _validity(present)
    return pa.Array.from_buffers(pa.float64(), data.size, [bitmap, pa.py_buffer(data)], nulls)


def strings(values: Sequence[str]) -> pa.Array:
    """A utf-8 string array (no nulls)."""
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), data])


def repeated(value: str, n: int) -> pa.Array:
    """`n` copies of one string (a file's `inst_id` and `timeframe` columns)."""
    raw = value.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(raw)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)]
    )


def empty_table(schema: pa.Schema) -> pa.Table:
    """A table of no rows (`schema.empty_table()` goes through `pa.array`, and so pandas)."""
    return pa.Table.from_batches([], schema=schema)


def _chunks(col: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    return list(col.chunks) if isinstance(col, pa.ChunkedArray) else [col]


def _values(chunk: pa.Array, dtype: type[np.generic]) -> npt.NDArray[np.generic]:
    """The value buffer of a fixed-width chunk, as numpy (a view; nulls hold arbitrary values)."""
    buf = chunk.buffers()[1]
    if buf is None:  # an all-null or empty array may have no data buffer
        return np.zeros(len(chunk), dtype=dtype)
    return np.frombuffer(buf, dtype=dtype, count=len(chunk), offset=chunk.offset * 8)


def present(col: pa.ChunkedArray | pa.Array) -> BoolArray:
    """True where `col` holds a value, False where it is null."""
    parts = []
    for chunk in _chunks(col):
        bitmap = chunk.buffers()[0]
        if chunk.null_count == 0 or bitmap is None:
            parts.append(np.ones(len(chunk), dtype=np.bool_))
            continue
        bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
        parts.append(bits[chunk.offset : chunk.offset + len(chunk)].astype(np.bool_))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.bool_)


def to_int64(col: pa.ChunkedArray | pa.Array) -> Int64Array:
    """An int64 column as numpy (nulls, if any, read as 0: check `present` where they matter)."""
    parts = [_values(c, np.int64) for c in _chunks(col)]
    if len(parts) == 1:
        return np.asarray(parts[0], dtype=np.int64)
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def to_float64(col: pa.ChunkedArray | pa.Array) -> Float64Array:
    """A float64 column as numpy, nulls as NaN."""
    parts = [_values(c, np.float64) for c in _chunks(col)]
    out = np.concatenate(parts).astype(np.float64) if parts else np.zeros(0, dtype=np.float64)
    if col.null_count:
        out = np.where(present(col), out, np.nan)
    return out
