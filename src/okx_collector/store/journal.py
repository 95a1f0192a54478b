"""The journal: every write appends one immutable batch file; compaction empties it.

    DATA_DIR/journal/{kind}/{writer_id}-{seq:012d}.parquet   (kinds: schema.ALL_KINDS)

A write (a live close of a thousand series, a REST catch-up, a backfill page, funding) costs one
small Parquet file holding every series of the batch (`inst_id` and, for candles, `timeframe`
columns say which), fsynced with its folder: a couple of milliseconds whatever the number of
series, where rewriting each series' partition cost about a millisecond per series.

Names are deterministic and never rewritten: `writer_id` is the writing process's start time (ms)
and pid plus a per-process counter, `seq` counts that writer's files. Sorted by name the files are
in write order (one writing command holds a data dir at a time), which is what the precedence rule
needs: a newer journal file wins over an older one and over the partitions (see `compact`). The
file is written under a temp name and renamed into place (a rename is allowed on a local disk;
on object storage the same deterministic name is written with one PUT).

Readers (`JournalReader`) only list and read; they never move, rename or delete a file.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from okx_collector.fsutil import fsync_dir
from okx_collector.store.arrow import int64s
from okx_collector.store.atomic import (
    UnreadableFile,
    read_parquet,
    storage_error,
    write_temp,
)
from okx_collector.store.merge import key_array
from okx_collector.store.schema import ALL_KINDS, Kind

JournalKind = Literal[
    "candles", "funding", "funding_live", "mark_candles", "index_candles", "open_interest"
]
KINDS: dict[str, Kind] = {k.name: k for k in ALL_KINDS}
JOURNAL_DIR = "journal"
SUFFIX = ".parquet"
SeriesKey = tuple[str, str]  # (inst_id, timeframe name; "" for funding)
CACHE_BYTES = 32 * 2**20  # decoded journal files kept for reads (they never change)

_instances = itertools.count()  # Journals made by this process: part of the writer id


def new_writer_id() -> str:
    """A name prefix no other run (nor another Journal of this one) uses, sorting by start."""
    return f"{time.time_ns() // 1_000_000:013d}-{os.getpid():07d}-{next(_instances):03d}"


def journal_root(data_dir: Path) -> Path:
    return data_dir / JOURNAL_DIR


def list_journal(data_dir: Path, kind: str) -> list[Path]:
    """The journal files of `kind`, oldest first (temp and moved-aside files start with `.`)."""
    directory = journal_root(data_dir) / kind
    try:
        with os.scandir(directory) as entries:
            names = [
                e.name
                for e in entries
                if e.name.endswith(SUFFIX) and not e.name.startswith(".") and e.is_file()
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [directory / n for n in sorted(names)]


class JournalWriter:
    """Appends batch files under one writer id; safe to call from several threads."""

    def __init__(self, data_dir: Path, writer_id: str | None = None) -> None:
        self.root = journal_root(data_dir)
        self.writer_id = writer_id or new_writer_id()
        self._seq = itertools.count(1)
        self._lock = threading.Lock()  # one name per seq, files renamed in seq order
        self.appended = 0  # files appended (the compactor's trigger reads it)

    def append(self, kind: JournalKind, table: pa.Table) -> Path:
        """Write `table` (validated rows of any number of series) as the next journal file;
        durable (file and folder fsynced) when this returns."""
        directory = self.root / kind
        # Encoding and the file's fsync run outside the lock (they release the GIL, and two
        # writes can overlap); the name is taken at the rename, so that no listing ever sees a
        # later name before an earlier one (a compaction takes a prefix of the names).
        tmp = write_temp(directory / f"{self.writer_id}{SUFFIX}", table, sync=True, hot=True)
        with self._lock:
            path = directory / f"{self.writer_id}-{next(self._seq):012d}{SUFFIX}"
            try:
                tmp.rename(path)  # never over an existing file: the name is unique
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise storage_error(path, "write", exc) from exc
        fsync_dir(directory)
        self.appended += 1
        return path


@dataclass(frozen=True, slots=True)
class _Decoded:
    """One journal file, its rows split per series (each sorted, unique: last row wins)."""

    series: dict[SeriesKey, pa.Table]
    nbytes: int


@dataclass(frozen=True, slots=True)
class JournalSpan:
    """A journal file holding rows of one series, and the range of those rows' keys."""

    path: Path
    first: int  # the series' oldest key (`ts`, `funding_time`) in the file
    last: int  # its newest

    def overlaps(self, start: int | None, end: int | None) -> bool:
        """Whether [first, last] meets [start, end) (None: unbounded)."""
        return (start is None or self.last >= start) and (end is None or self.first < end)


class JournalVanished(Exception):
    """A journal file listed a moment ago is gone: a compaction merged it (read again)."""


def _codes(column: pa.ChunkedArray) -> tuple[npt.NDArray[np.int64], list[str]]:
    """A string column as small integer codes, and the strings they stand for."""
    encoded = pc.dictionary_encode(column.combine_chunks())
    indices = encoded.indices
    raw = np.frombuffer(indices.buffers()[1], dtype=np.int32, count=indices.offset + len(indices))
    return raw[indices.offset :].astype(np.int64), [str(v) for v in encoded.dictionary.to_pylist()]


def series_codes(table: pa.Table) -> tuple[npt.NDArray[np.int64], list[SeriesKey]]:
    """Per row, a code for its series, and the series (inst_id, timeframe or "") of each code."""
    id_codes, id_names = _codes(table.column("inst_id"))
    if "timeframe" in table.column_names:
        tf_codes, tf_names = _codes(table.column("timeframe"))
    else:
        tf_codes, tf_names = np.zeros(table.num_rows, dtype=np.int64), [""]
    names = [(i, tf) for i in id_names for tf in tf_names]
    return id_codes * len(tf_names) + tf_codes, names


def by_series(
    table: pa.Table, codes: npt.NDArray[np.int64], names: list[SeriesKey]
) -> dict[SeriesKey, tuple[int, int]]:
    """[lo, hi) of each series in a table sorted by series code (`codes` in that order)."""
    bounds = np.searchsorted(codes, np.arange(len(names) + 1), side="left")
    return {
        name: (int(bounds[c]), int(bounds[c + 1]))
        for c, name in enumerate(names)
        if bounds[c + 1] > bounds[c]
    }


def split_series(table: pa.Table, kind: Kind) -> dict[SeriesKey, pa.Table]:
    """The rows of one batch per series, each sorted by key with the batch's last row winning
    (one sort and one take for the whole batch; the tables returned are slices of it)."""
    if table.num_rows == 0:
        return {}
    codes, names = series_codes(table)
    keys = key_array(table, kind.key)
    order = np.lexsort((keys, codes))  # stable: equal keys keep the batch order
    c, k = codes[order], keys[order]
    last = np.append((c[1:] != c[:-1]) | (k[1:] != k[:-1]), True)
    rows = table.take(int64s(order[last])).combine_chunks()
    spans = by_series(rows, c[last], names)
    return {name: rows.slice(lo, hi - lo) for name, (lo, hi) in spans.items()}


class JournalReader:
    """Reads journal files per series, with the decoded files cached (they never change)."""

    def __init__(self, data_dir: Path, cache_bytes: int = CACHE_BYTES) -> None:
        self.data_dir = data_dir
        self._cache: OrderedDict[Path, _Decoded] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._held = 0
        self._lock = threading.Lock()  # guards the cache

    def files(self, kind: str) -> list[Path]:
        return list_journal(self.data_dir, kind)

    def decode(self, path: Path, kind: Kind) -> dict[SeriesKey, pa.Table]:
        """The file's rows per series. Raises `JournalVanished` if it is gone, `UnreadableFile`
        if it cannot be decoded (never moved here: only a writing command's start-up does)."""
        with self._lock:
            hit = self._cache.get(path)
            if hit is not None:
                self._cache.move_to_end(path)
                return hit.series
        try:
            table = read_parquet(path, kind.schema)
        except FileNotFoundError:
            raise JournalVanished(str(path)) from None
        series = split_series(table, kind)
        entry = _Decoded(series, sum(t.nbytes for t in series.values()))
        with self._lock:
            if entry.nbytes <= self._cache_bytes:
                self._cache[path] = entry
                self._held += entry.nbytes
                while self._held > self._cache_bytes:
                    _, old = self._cache.popitem(last=False)
                    self._held -= old.nbytes
        return series

    def forget(self, paths: list[Path]) -> None:
        """Drop deleted files from the cache (a compaction merged them)."""
        with self._lock:
            for path in paths:
                old = self._cache.pop(path, None)
                if old is not None:
                    self._held -= old.nbytes

    def series_rows(
        self,
        kind: Kind,
        key: SeriesKey,
        files: list[Path],
        start: int | None,
        end: int | None,
        unreadable: list[tuple[Path, str]] | None = None,
    ) -> list[pa.Table]:
        """The series' rows in [start, end) from each of `files` that has some, oldest first
        (each sorted and unique; `merge.dedupe_runs` applies the precedence rule). Unreadable
        files are skipped and listed in `unreadable`."""
        parts: list[pa.Table] = []
        for path in files:
            try:
                rows = self.decode(path, kind).get(key)
            except UnreadableFile as exc:
                if unreadable is not None:
                    unreadable.append((path, exc.reason))
                continue
            if rows is not None and rows.num_rows:
                found = _slice(rows, kind.key, start, end)
                if found.num_rows:
                    parts.append(found)
        return parts

    def spans(self, kind: Kind, key: SeriesKey, files: list[Path]) -> list[JournalSpan]:
        """Each of `files` holding rows of the series, with their key range, oldest first
        (unreadable files, and files a compaction merged meanwhile, left out)."""
        found = []
        for path in files:
            try:
                rows = self.decode(path, kind).get(key)
            except (UnreadableFile, JournalVanished):
                continue
            if rows is not None and rows.num_rows:
                keys = key_array(rows, kind.key)  # (sorted: `split_series`)
                found.append(JournalSpan(path, int(keys[0]), int(keys[-1])))
        return found

    def series_keys(self, kind: Kind, files: list[Path]) -> set[SeriesKey]:
        """Every series with rows in `files` (unreadable and vanished files skipped)."""
        found: set[SeriesKey] = set()
        for path in files:
            try:
                found.update(self.decode(path, kind))
            except (UnreadableFile, JournalVanished):
                continue
        return found


def _slice(table: pa.Table, key: str, start: int | None, end: int | None) -> pa.Table:
    """Rows of a sorted table with key in [start, end)."""
    if start is None and end is None:
        return table
    keys = key_array(table, key)
    lo = 0 if start is None else int(np.searchsorted(keys, start, side="left"))
    hi = keys.size if end is None else int(np.searchsorted(keys, end, side="left"))
    return table.slice(lo, max(0, hi - lo))
