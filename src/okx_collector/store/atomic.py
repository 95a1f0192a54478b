"""Crash-safe Parquet file replacement, and the file names readers must skip.

A partition is never written in place: the new content goes to a temp file in the same folder,
is fsynced, then `os.replace`d over the old name, and the folder is fsynced so that the rename
itself survives a power cut (POSIX rename(2) is atomic; fsync of the directory persists it).
Readers therefore see the old file or the new one, never a torn one.

Names that readers skip: temp files and quarantined files start with `.` (pyarrow's dataset
discovery ignores `.`/`_` prefixes) and do not end in `.parquet` (so `*.parquet` globs in
DuckDB and Polars skip them too).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import itertools
import os
import re
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from okx_collector.errors import StorageError
from okx_collector.fsutil import fsync_dir

# Snappy for every partition: a year of 1m decodes in ~18 ms where zstd takes ~60 ms (the read
# API's budget is 50 ms, DataFrame included), for files ~5-25% larger (prices are nearly all
# distinct: little for any codec to find). benchmarks/README.md, "Partition size".
COMPRESSION = "snappy"
HOT_COMPRESSION = "snappy"  # journal files (`hot`): written once, read once by compaction
# Rows per row group: a month of 1m is ~11 groups of ~2.8 days, so a week's read decodes about
# a week (the groups' `ts` statistics say which), while a whole read pays little for the split.
ROW_GROUP_ROWS = 4096
_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]+$")


class UnreadableFile(Exception):
    """A Parquet file exists but cannot be decoded (truncated, garbage, or wrong schema)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


_TEMP_TOKEN = secrets.token_hex(3)  # with a counter: unique in this process without a syscall
_temp_counter = itertools.count()  # (next() on it is atomic under the GIL)


def temp_name(final: Path) -> Path:
    """A fresh temp path beside `final`, carrying our pid so that recovery can tell it is ours."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{_TEMP_TOKEN}{next(_temp_counter):x}")


FileSig = tuple[int, int, int]  # (st_ino, st_size, st_mtime_ns)


def file_sig(path: Path) -> FileSig | None:
    """The identity of the file now at `path`, or None if there is none."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def temp_owner_pid(name: str) -> int | None:
    """The pid embedded in a temp file name, or None if `name` is not one of our temp files."""
    m = _TEMP_RE.fullmatch(name)
    return int(m.group(1)) if m else None


def quarantine_name(path: Path, now: datetime | None = None) -> Path:
    """Where an unreadable file is moved: hidden, and not ending in `.parquet`."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return path.with_name(f".{path.name}.corrupt-{stamp}")


def storage_error(path: Path, action: str, exc: OSError) -> StorageError:
    """A one-line `StorageError` for an OS failure, with what the user can do about it."""
    reason = exc.strerror or str(exc)
    if exc.errno is not None:
        reason = f"{reason} (errno {exc.errno})"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "make the data directory writable, or choose another with --data-dir"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = "free some space and rerun: okx-collector resumes where it stopped"
    else:
        hint = "check the data directory, or choose another with --data-dir"
    return StorageError(f"cannot {action} {path}: {reason}; {hint}")


def make_dirs(directory: Path) -> None:
    """Create `directory` and its parents, as a `StorageError` if the OS refuses; each folder it
    creates is made durable in its parent (a file fsynced and renamed into a new folder would
    otherwise vanish with the folder's entry on a power cut)."""
    created: list[Path] = []
    missing = directory
    while not missing.exists() and missing != missing.parent:
        created.append(missing)
        missing = missing.parent
    if not created:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(directory, "create directory", exc) from exc
    for folder in reversed(created):
        fsync_dir(folder.parent)


@functools.lru_cache(maxsize=16)
def _write_options(schema: pa.Schema) -> dict[str, Any]:
    """Encodings that keep a partition small and quick to rewrite.

    Dictionaries only for the low-cardinality strings (floats are nearly all distinct, and a
    dictionary there costs time and space); delta encoding for the int64 times (sorted, so
    the deltas are constant). DuckDB, Polars and pyarrow all read both encodings.
    """
    strings = [f.name for f in schema if pa.types.is_string(f.type)]
    ints = {f.name: "DELTA_BINARY_PACKED" for f in schema if pa.types.is_int64(f.type)}
    return {
        "compression": COMPRESSION,
        # Min/max of the time columns let readers skip files and row groups on a time filter;
        # on prices they would cost encoding time on every rewrite and prune nothing.
        "write_statistics": list(ints),
        "use_dictionary": strings,
        "column_encoding": ints,
    }


@contextlib.contextmanager
def _removed_on_failure(tmp: Path, path: Path) -> Iterator[None]:
    """Delete `tmp` if the block fails; an OS error becomes a one-line `StorageError`."""
    try:
        yield
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise storage_error(path, "write", exc) from exc
        raise


def _create(path: Path) -> int:
    """Create `path` (and its folder when missing: rare, so not checked before every write)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, 0o666)
    except FileNotFoundError:
        make_dirs(path.parent)
        return os.open(path, flags, 0o666)


def write_temp(path: Path, table: pa.Table, *, sync: bool, hot: bool = False) -> Path:
    """Write `table` to a fresh temp file beside `path` (fsynced if `sync`); return its path.

    `hot`: a file written for speed (journal files); today the same codec as every partition."""
    tmp = temp_name(path)
    # Encoded in memory, then written with one call: pyarrow writing through a Python file
    # object crosses into Python for every page, which made a small file cost 3x its encoding.
    sink = pa.BufferOutputStream()
    options = _write_options(table.schema)
    if hot:
        options = {**options, "compression": HOT_COMPRESSION}
    pq.write_table(table, sink, **options, row_group_size=ROW_GROUP_ROWS)
    data = memoryview(sink.getvalue())
    with _removed_on_failure(tmp, path):
        fd = _create(tmp)
        try:
            while data:
                data = data[os.write(fd, data) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    return tmp


# The folders whose renames a compaction round makes durable itself (see `deferred_dir_syncs`).
_DEFERRED: contextvars.ContextVar[set[Path] | None] = contextvars.ContextVar(
    "deferred_dir_syncs", default=None
)


@contextlib.contextmanager
def deferred_dir_syncs(dirs: set[Path]) -> Iterator[None]:
    """Inside this block (and contexts copied from it), a `write_atomic(..., deferrable=True)`
    adds its folder to `dirs` instead of fsyncing it: the caller fsyncs them all at once
    (`fsutil.fsync_dirs`) before it relies on the renames being durable (a compaction, before
    it deletes journal files). The file itself is still fsynced before its rename, so the name
    always holds the old content or the whole new one."""
    token = _DEFERRED.set(dirs)
    try:
        yield
    finally:
        _DEFERRED.reset(token)


def write_atomic(path: Path, table: pa.Table, *, deferrable: bool = False) -> None:
    """Write `table` to `path` atomically: temp file, fsync, `os.replace`, fsync the folder
    (`deferrable`: unless a `deferred_dir_syncs` block collects the folder instead)."""
    replace_synced(write_temp(path, table, sync=True), path, deferrable=deferrable)


def replace_synced(tmp: Path, path: Path, *, deferrable: bool = False) -> None:
    """Rename an fsynced temp file (`write_temp`, or `sync_file` after it) over `path`, then
    fsync the folder (`deferrable`: unless a `deferred_dir_syncs` block collects it)."""
    with _removed_on_failure(tmp, path):
        tmp.replace(path)
    pending = _DEFERRED.get() if deferrable else None
    if pending is None:
        fsync_dir(path.parent)
    else:
        pending.add(path.parent)  # (set.add is atomic under the GIL)


def sync_file(path: Path) -> None:
    """fsync a file written with `write_temp(..., sync=False)`; `StorageError` if it fails (its
    data may not be on disk then: it must not be renamed into place).

    A descriptor of its own: fsync flushes the inode's pages, whichever descriptor wrote them
    (the writer's is closed, so that a chunk of staged files holds no descriptors meanwhile).
    Run on many threads at once, the fsyncs share ext4's journal commits, where one after
    another each waits for a commit of its own (benchmarks/README.md, "compact.py")."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise storage_error(path, "write", exc) from exc


def _row_groups(meta: pq.FileMetaData, key: str, start: int | None, end: int | None) -> list[int]:
    """The row groups of a file whose `key` statistics may hold a value in [start, end) (all
    of them for a file written without statistics)."""
    idx = meta.schema.to_arrow_schema().get_field_index(key)
    found = []
    for rg in range(meta.num_row_groups):
        stats = meta.row_group(rg).column(idx).statistics if idx >= 0 else None
        if (
            stats is None
            or not stats.has_min_max
            or ((start is None or stats.max >= start) and (end is None or stats.min < end))
        ):
            found.append(rg)
    return found


def read_parquet(
    path: Path,
    schema: pa.Schema,
    columns: list[str] | None = None,
    within: tuple[str, int | None, int | None] | None = None,
) -> pa.Table:
    """Read `path` conformed to `schema` (or its `columns`).

    `within` (key column, start, end): only the row groups whose statistics may hold a key in
    [start, end) are decoded (the caller still slices the rows: a group holds more).

    Raises FileNotFoundError if it is absent, `UnreadableFile` if it cannot be decoded, and
    `StorageError` if the OS refuses to read it (a permission problem is not corruption).
    """
    wanted = schema if columns is None else pa.schema([schema.field(c) for c in columns])
    try:
        # One open, then footer and pages from that same inode: a concurrent `os.replace` cannot
        # mix two versions of the file (path-based readers that re-open can see exactly that).
        with pa.OSFile(str(path)) as fh:
            # No pre-buffering: it coalesces reads for remote storage, and on a local file its
            # extra buffers cost more than the read (0.19 vs 0.44 ms for a month of 15m).
            pf = pq.ParquetFile(fh, pre_buffer=False)
            if within is None or pf.metadata.num_row_groups < 2:
                table = pf.read(columns=wanted.names, use_threads=False)
            else:
                groups = _row_groups(pf.metadata, *within)
                table = pf.read_row_groups(groups, columns=wanted.names, use_threads=False)
    except FileNotFoundError:
        raise
    except pa.ArrowInvalid as exc:
        raise UnreadableFile(path, str(exc).splitlines()[0]) from exc
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EIO):
            raise storage_error(path, "read", exc) from exc
        # pyarrow reports most decoding failures as OSError/ArrowIOError without an errno.
        raise UnreadableFile(path, str(exc).splitlines()[0] if str(exc) else repr(exc)) from exc
    except (pa.ArrowException, ValueError, KeyError) as exc:
        raise UnreadableFile(path, str(exc).splitlines()[0] if str(exc) else repr(exc)) from exc
    try:
        return table.cast(wanted) if not table.schema.equals(wanted) else table
    except (pa.ArrowException, ValueError) as exc:
        raise UnreadableFile(path, f"unexpected schema: {exc}") from exc


def move_aside(path: Path) -> Path | None:
    """Rename an unreadable file out of every reader's way; None if it was already gone."""
    target = quarantine_name(path)
    try:
        path.replace(target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise storage_error(path, "move aside unreadable file", exc) from exc
    fsync_dir(path.parent)
    return target


class Staging:
    """The one file of a staged merge (`SeriesIO.stage_in`) not yet fsynced nor renamed: each
    write completes the one before it (fsync, rename) first."""

    def __init__(self) -> None:
        self.temp: Path | None = None
        self.final: Path | None = None

    def write(self, path: Path, table: pa.Table) -> None:
        self.flush()
        self.temp = write_temp(path, table, sync=False)
        self.final = path

    def flush(self) -> None:
        """Complete the staged write (fsync, rename) before anything reads or lists the
        series' files again."""
        if self.temp is not None and self.final is not None:
            temp, self.temp = self.temp, None
            try:
                sync_file(temp)
            except BaseException:
                with contextlib.suppress(OSError):
                    temp.unlink()
                raise
            replace_synced(temp, self.final, deferrable=True)

    def discard(self) -> None:
        if self.temp is not None:
            with contextlib.suppress(OSError):
                self.temp.unlink()
            self.temp = None


class StagedReplace:
    """A staged merge (`SeriesIO.stage_in`) holding its series' lock: `temp` (if any) waits
    for its fsync by the caller, then `commit()` renames it over `final` (the folder's fsync
    deferrable, see `deferred_dir_syncs`); `abort()` removes it. Either releases the lock."""

    def __init__(
        self, rewritten: int, temp: Path | None, final: Path | None, release: Callable[[], None]
    ) -> None:
        self.rewritten = rewritten  # files written, this one included
        self.temp = temp
        self.final = final
        self._release: Callable[[], None] | None = release

    def commit(self) -> None:
        """Rename the (fsynced) temp file into place; then release the lock."""
        try:
            if self.temp is not None and self.final is not None:
                temp, self.temp = self.temp, None
                replace_synced(temp, self.final, deferrable=True)
        finally:
            self._done()

    def abort(self) -> None:
        """Remove the temp file, leaving the old file in place; release the lock."""
        try:
            if self.temp is not None:
                with contextlib.suppress(OSError):
                    self.temp.unlink()
                self.temp = None
        finally:
            self._done()

    def _done(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()
