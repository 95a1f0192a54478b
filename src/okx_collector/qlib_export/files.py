"""Writing the export directory's files: whole files atomically, feature files streamed or patched.

Three ways a file changes:

- `write_atomic`: small files (calendar rewrite, instruments, manifest) go to a temp file beside
  the target, are fsynced and `os.replace`d over it.
- `StreamedFile`: a feature file written in full, block by block (bounded memory), to a temp file
  that replaces the old one on `commit`; it hashes what it writes, so no second read is needed,
  and saves the hash's state near the end of the file (a `HashPoint`).
- `PatchedFile`: an existing feature file changed in place (an incremental export): grown to its
  new length, then only the changed slots are written at their explicit offsets. In-place writes
  are not atomic: the exporter's journal (`manifest.journal_path`) marks them until the new
  manifest is in place, so an interrupted export is detected and redone in full. Its new
  checksum is resumed from the `HashPoint` saved by the last export when nothing before that
  point was written and the file is the one the point was saved for (`hash_file`); so an append
  hashes the last `TAIL_BYTES` and the new bytes, not the whole file.

Feature files are not fsynced one after the other by the thread that wrote them: each is handed
to a `Syncer`, whose threads sync them while the export goes on (an fsync is mostly a wait for
the disk: eight at once cost about one), and the exporter waits for all of them before it writes
the manifest. A crash before that leaves the exporter's journal behind, so nothing written meanwhile
is trusted.

Temp files are hidden and carry our pid (`.close.15min.bin.tmp-PID-HEX`): qlib ignores them and
`remove_stale_temps` deletes those of processes that are gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from okx_collector.errors import StorageError
from okx_collector.fsutil import pid_alive
from okx_collector.qlib_export.digest import Sha256
from okx_collector.qlib_export.manifest import FileEntry

if TYPE_CHECKING:
    from okx_collector.qlib_export.syncer import Syncer

VALUE_BYTES = 4  # float32
# A file's hash state is saved this far before its end: an update that rewrites the last bars
# (funding from the previous settlement: 8 h, 1,920 bytes of 1m) still resumes from it.
TAIL_BYTES = 1 << 14
READ_BLOCK = 1 << 20
_TEMP_RE = re.compile(r"^\..+\.tmp-(\d+)-[0-9a-f]+$")


def export_error(path: Path, action: str, exc: OSError) -> StorageError:
    """A one-line error for an OS failure on the export directory."""
    return StorageError(
        f"cannot {action} {path}: {exc.strerror or exc}; check the --out directory "
        "(writable, enough free space), or choose another"
    )


def temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")


def remove_stale_temps(directory: Path) -> None:
    """Delete temp files in `directory` left by exporters that no longer run."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(directory) as it:
        for entry in it:
            m = _TEMP_RE.fullmatch(entry.name)
            if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
                with contextlib.suppress(OSError):
                    Path(entry.path).unlink()


def make_dirs(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise export_error(directory, "create directory", exc) from exc


def write_atomic(path: Path, data: bytes) -> FileEntry:
    """Replace `path` by `data` atomically (temp, fsync, `os.replace`); its size and sha256."""
    make_dirs(path.parent)
    tmp = temp_name(path)
    try:
        with tmp.open("xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise export_error(path, "write", exc) from exc
    return FileEntry(len(data), hashlib.sha256(data).hexdigest())


Ident = tuple[int, int, int]  # st_ino, st_size, st_mtime_ns: this very file, as last written


@dataclass(frozen=True, slots=True)
class HashPoint:
    """The SHA-256 state after the first `offset` bytes of the file that had identity `ident`."""

    ident: Ident
    offset: int
    state: str


def ident(path: Path) -> Ident | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def checkpoint(size: int) -> int:
    """Where a file of `size` bytes keeps its hash state."""
    return max(0, size - TAIL_BYTES)


def hash_file(path: Path, start: HashPoint | None) -> tuple[FileEntry, HashPoint | None]:
    """Size and sha256 of `path`, hashing from `start` (a state valid for the file's first
    `start.offset` bytes, checked by the caller) or from byte 0; and a new point to resume from."""
    h, offset = Sha256(), 0
    if start is not None:
        with contextlib.suppress(ValueError):  # (a state saved where OpenSSL's could be)
            h, offset = Sha256.resume(start.state), start.offset
    saved: tuple[int, str | None] | None = None
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            mark = max(offset, checkpoint(size))
            fh.seek(offset)
            while True:
                want = READ_BLOCK if offset >= mark else min(READ_BLOCK, mark - offset)
                chunk = fh.read(want)
                if offset == mark and saved is None:
                    saved = (offset, h.state())
                if not chunk:
                    break
                h.update(chunk)
                offset += len(chunk)
    except OSError as exc:
        raise export_error(path, "read", exc) from exc
    entry = FileEntry(offset, h.hexdigest())
    now = ident(path)
    if saved is None or saved[1] is None or now is None or now[1] != offset:
        return entry, None
    return entry, HashPoint(now, saved[0], saved[1])


def file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise export_error(path, "remove", exc) from exc


def _f32le(values: npt.NDArray[np.float32]) -> memoryview:
    """The bytes of `values` as little-endian float32 (no copy on little-endian machines)."""
    return np.ascontiguousarray(values, dtype="<f4").data.cast("B")


def header(start_index: int) -> bytes:
    """Value 0 of a feature file: the calendar slot of its first value, as float32."""
    return np.array([start_index], dtype="<f4").tobytes()


class StreamedFile:
    """A file written in full, block by block, to a temp file that replaces the old on commit."""

    def __init__(
        self,
        final: Path,
        first: bytes = b"",
        size: int | None = None,
        syncer: Syncer | None = None,
    ) -> None:
        self.final = final  # where the file ends up
        self._syncer = syncer  # syncs it after the rename (else: before, here)
        self._tmp = temp_name(final)  # where it is written meanwhile
        self._hash = Sha256()  # of everything written so far
        self._size = 0  # bytes written so far
        # Where to save the hash state: near the end of the file, when its size is known.
        self._mark = checkpoint(size) if size is not None else None
        self._saved: tuple[int, str] | None = None  # (offset, state) once passed
        self.point: HashPoint | None = None  # set by `commit`
        try:
            self._fh = self._tmp.open("xb")
        except OSError as exc:
            raise export_error(final, "write", exc) from exc
        if first:
            self.write(first)

    def write(self, data: bytes | npt.NDArray[np.float32]) -> None:
        raw = data if isinstance(data, bytes) else _f32le(data)
        try:
            self._fh.write(raw)
        except OSError as exc:
            self.abort()
            raise export_error(self.final, "write", exc) from exc
        mark = self._mark
        if mark is not None and self._saved is None and self._size <= mark <= self._size + len(raw):
            cut = mark - self._size
            self._hash.update(raw[:cut])
            state = self._hash.state()
            if state is not None:
                self._saved = (mark, state)
            self._hash.update(raw[cut:])
        else:
            self._hash.update(raw)
        self._size += len(raw)

    def commit(self) -> FileEntry:
        """fsync and move into place (the caller fsyncs the directory); with a `Syncer`, move
        into place and hand the file to it."""
        try:
            self._fh.flush()
            if self._syncer is None:
                os.fsync(self._fh.fileno())
                self._fh.close()
            self._tmp.replace(self.final)
        except OSError as exc:
            self.abort()
            raise export_error(self.final, "write", exc) from exc
        if self._syncer is not None:
            self._syncer.fd(os.dup(self._fh.fileno()), self.final)
            self._fh.close()
        now = ident(self.final)
        if self._saved is not None and now is not None and now[1] == self._size:
            self.point = HashPoint(now, *self._saved)
        return FileEntry(self._size, self._hash.hexdigest())

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._fh.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()


class PatchedFile:
    """An existing feature file changed in place: resized, then written at explicit slots."""

    def __init__(self, path: Path, first: int, step: int, syncer: Syncer | None = None) -> None:
        self.path = path
        self._syncer = syncer  # syncs it on close (else: close syncs it)
        self._first = first  # open time of the bar at value 1 (right after the header)
        self._step = step  # bar length, ms
        self.low: int | None = None  # the lowest byte offset written (or cut) so far
        try:
            self._fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            raise export_error(path, "open", exc) from exc

    def __enter__(self) -> PatchedFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(sync=exc is None)

    def resize(self, bars: int) -> None:
        """Make room for exactly `bars` values after the header (new bytes read as 0 until set)."""
        size = VALUE_BYTES * (1 + bars)
        self._do("resize", lambda: os.ftruncate(self._fd, size))
        self._wrote(size)  # (a cut changes the bytes from there; growing adds zeros to write)

    def set_header(self, start_index: int) -> None:
        self._do("write", lambda: os.pwrite(self._fd, header(start_index), 0))
        self._wrote(0)

    def _wrote(self, offset: int) -> None:
        self.low = offset if self.low is None else min(self.low, offset)

    def write_at(self, open_ts: int, values: npt.NDArray[np.float32]) -> None:
        """Write `values` to the slots starting at the bar opening at `open_ts`."""
        offset = VALUE_BYTES * (1 + (open_ts - self._first) // self._step)
        raw = _f32le(values)
        self._do("write", lambda: os.pwrite(self._fd, raw, offset))
        self._wrote(offset)

    def close(self, sync: bool = True) -> None:
        if self._fd < 0:
            return
        if sync and self._syncer is not None:
            fd, self._fd = self._fd, -1
            self._syncer.fd(fd, self.path)
            return
        try:
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            raise export_error(self.path, "sync", exc) from exc
        finally:
            os.close(self._fd)
            self._fd = -1

    def _do(self, action: str, op: Callable[[], object]) -> None:
        try:
            op()
        except OSError as exc:
            raise export_error(self.path, action, exc) from exc


def stream_atomic(
    path: Path, chunks: Iterable[bytes], size: int | None = None
) -> tuple[FileEntry, HashPoint | None]:
    """Replace `path` atomically by the concatenation of `chunks` (written as they come); its
    entry, and the hash point near its end if its `size` was given."""
    make_dirs(path.parent)
    writer = StreamedFile(path, size=size)
    try:
        for chunk in chunks:
            writer.write(chunk)
        return writer.commit(), writer.point
    except BaseException:
        writer.abort()
        raise


def rewrite_tail(
    path: Path, keep: int, chunks: Iterable[bytes], point: HashPoint | None = None
) -> tuple[FileEntry, HashPoint | None]:
    """Cut `path` to `keep` bytes and append `chunks`, in place (the caller journals it); its
    entry, hashed from `point` (checked by the caller to be this file's) if it lies within the
    bytes kept, and the new hash point."""
    try:
        with path.open("r+b") as fh:
            fh.truncate(keep)
            fh.seek(keep)
            for chunk in chunks:
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise export_error(path, "write", exc) from exc
    return hash_file(path, point if point is not None and point.offset <= keep else None)
