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
from dataclasses import dataclass, field
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
    return [directory / n for n in journal_names(directory)]


def journal_names(directory: Path) -> list[str]:
    """The names of the journal files in `directory` (one kind's), oldest first."""
    try:
        with os.scandir(directory) as entries:
            names = [
                e.name
                for e in entries
                if e.name.endswith(SUFFIX) and not e.name.startswith(".") and e.is_file()
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(names)


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
    return _split(table, kind)[0]


def _split(
    table: pa.Table, kind: Kind
) -> tuple[dict[SeriesKey, pa.Table], dict[SeriesKey, tuple[int, int]], int]:
    """`split_series`, each series' oldest and newest key, and the bytes the rows hold."""
    if table.num_rows == 0:
        return {}, {}, 0
    codes, names = series_codes(table)
    keys = key_array(table, kind.key)
    if len(names) == 1 and bool(np.all(keys[1:] > keys[:-1])):
        # One series, sorted and unique (a backfill page, a catch-up): as it is.
        rows = table.combine_chunks()
        return {names[0]: rows}, {names[0]: (int(keys[0]), int(keys[-1]))}, rows.nbytes
    order = np.lexsort((keys, codes))  # stable: equal keys keep the batch order
    c, k = codes[order], keys[order]
    last = np.append((c[1:] != c[:-1]) | (k[1:] != k[:-1]), True)
    rows = table.take(int64s(order[last])).combine_chunks()
    spans = by_series(rows, c[last], names)
    kept = k[last].tolist()
    return (
        {name: rows.slice(lo, hi - lo) for name, (lo, hi) in spans.items()},
        {name: (kept[lo], kept[hi - 1]) for name, (lo, hi) in spans.items()},
        rows.nbytes,  # (the series' tables are slices of it: summing theirs costs more)
    )


@dataclass(slots=True)
class _KindIndex:
    """What the journal files of one kind hold, as far as they were decoded: per series, the
    files holding rows of it and the key range there (a few numbers a series and file, kept
    while the file is listed; the rows themselves stay in the bounded cache)."""

    files: dict[Path, list[SeriesKey]] = field(default_factory=dict)  # decoded -> its series
    unreadable: dict[Path, str] = field(default_factory=dict)  # cannot be decoded -> why
    spans: dict[SeriesKey, dict[Path, tuple[int, int]]] = field(default_factory=dict)

    def add(self, path: Path, spans: dict[SeriesKey, tuple[int, int]]) -> None:
        if path in self.files:
            return
        self.files[path] = list(spans)
        for name, span in spans.items():
            self.spans.setdefault(name, {})[path] = span

    def drop(self, path: Path) -> None:
        self.unreadable.pop(path, None)
        for name in self.files.pop(path, ()):
            held = self.spans.get(name)
            if held is not None:
                held.pop(path, None)
                if not held:
                    del self.spans[name]


class JournalReader:
    """Reads journal files per series, with the decoded files cached (they never change).

    Each file is decoded once for an index of the series it holds and their key ranges, so that
    a read of one series opens only the files holding it in the range asked for (an export of
    many instruments over thousands of journal files no longer looks at every file per read);
    a file's rows are decoded again only once the cache (`cache_bytes`) has let them go.
    """

    def __init__(self, data_dir: Path, cache_bytes: int = CACHE_BYTES) -> None:
        self.data_dir = data_dir
        self._cache: OrderedDict[Path, _Decoded] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._held = 0
        self._index: dict[str, _KindIndex] = {}  # by kind name
        # The last listing of each kind, name -> path: a listing reuses the Path objects (a new
        # Path per file and call cost more than the rest of a read, thousands of files a call).
        self._listed: dict[str, dict[str, Path]] = {}
        self._lock = threading.Lock()  # guards the cache, the index and the listings
        self.decoded = 0  # files read and split so far (each once, unless the cache let it go)

    def files(self, kind: str) -> list[Path]:
        """The journal files of `kind`, oldest first; files gone since the last listing leave
        the index and the cache (a compaction merged them)."""
        directory = journal_root(self.data_dir) / kind
        names = journal_names(directory)
        with self._lock:
            before = self._listed.get(kind, {})
            listed = {n: before.get(n) or directory / n for n in names}
            self._listed[kind] = listed
            for name, path in before.items():
                if name not in listed:
                    old = self._cache.pop(path, None)
                    if old is not None:
                        self._held -= old.nbytes
            index = self._index.get(kind)
            if index is not None and len(index.files) + len(index.unreadable) > len(listed):
                # (Also what another thread indexed from an older listing meanwhile.)
                current = set(listed.values())
                for path in [p for p in (*index.files, *index.unreadable) if p not in current]:
                    index.drop(path)
        return list(listed.values())

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
        series, spans, nbytes = _split(table, kind)
        entry = _Decoded(series, nbytes)
        with self._lock:
            self.decoded += 1
            self._index.setdefault(kind.name, _KindIndex()).add(path, spans)
            if entry.nbytes <= self._cache_bytes:
                self._cache[path] = entry
                self._held += entry.nbytes
                while self._held > self._cache_bytes:
                    _, old = self._cache.popitem(last=False)
                    self._held -= old.nbytes
        return series

    def _indexed(self, kind: Kind, files: list[Path]) -> tuple[_KindIndex, bool]:
        """The index of `kind` covering `files` (decoding those not seen yet), and whether one
        of them is gone (a compaction merged it)."""
        with self._lock:
            index = self._index.setdefault(kind.name, _KindIndex())
            new = [p for p in files if p not in index.files and p not in index.unreadable]
        vanished = False
        for path in new:
            try:
                self.decode(path, kind)
            except UnreadableFile as exc:
                with self._lock:
                    index.unreadable[path] = exc.reason
            except JournalVanished:
                vanished = True
        return index, vanished

    def _holding(
        self, kind: Kind, key: SeriesKey, files: list[Path], vanished_ok: bool
    ) -> tuple[list[tuple[Path, int, int]], list[tuple[Path, str]]]:
        """Of `files`, those holding rows of the series, with the key range there, oldest first;
        and those that cannot be decoded. Raises `JournalVanished` unless `vanished_ok`."""
        index, vanished = self._indexed(kind, files)
        if vanished and not vanished_ok:
            raise JournalVanished(kind.name)
        with self._lock:
            held = index.spans.get(key, {})
            found = [(p, *held[p]) for p in files if p in held]
            bad = [(p, index.unreadable[p]) for p in files if p in index.unreadable]
        return found, bad

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
        found, bad = self._holding(kind, key, files, vanished_ok=False)
        if unreadable is not None:
            unreadable.extend(bad)
        parts: list[pa.Table] = []
        for path, first, last in found:
            if (start is not None and last < start) or (end is not None and first >= end):
                continue
            rows = self.decode(path, kind).get(key)  # (cached, or decoded again)
            if rows is not None:
                part = _slice(rows, kind.key, start, end)
                if part.num_rows:
                    parts.append(part)
        return parts

    def spans(self, kind: Kind, key: SeriesKey, files: list[Path]) -> list[JournalSpan]:
        """Each of `files` holding rows of the series, with their key range, oldest first
        (unreadable files, and files a compaction merged meanwhile, left out)."""
        found, _ = self._holding(kind, key, files, vanished_ok=True)
        return [JournalSpan(path, first, last) for path, first, last in found]

    def series_keys(self, kind: Kind, files: list[Path]) -> set[SeriesKey]:
        """Every series with rows in `files` (unreadable and vanished files skipped)."""
        index, _ = self._indexed(kind, files)
        with self._lock:
            return {name for p in files for name in index.files.get(p, ())}


def _slice(table: pa.Table, key: str, start: int | None, end: int | None) -> pa.Table:
    """Rows of a sorted table with key in [start, end)."""
    if start is None and end is None:
        return table
    keys = key_array(table, key)
    lo = 0 if start is None else int(np.searchsorted(keys, start, side="left"))
    hi = keys.size if end is None else int(np.searchsorted(keys, end, side="left"))
    return table.slice(lo, max(0, hi - lo))
