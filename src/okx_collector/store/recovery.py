"""Start-up repair after a crash: stale temp files removed, unreadable partitions moved aside.

An unreadable partition is renamed to `.NAME.parquet.corrupt-<UTC time>` beside it (hidden, and
not `*.parquet`, so no reader picks it up) rather than deleted: the user can still inspect it.
The series then reads as if that partition were absent, and the next backfill re-fetches it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from okx_collector.fsutil import pid_alive
from okx_collector.store.atomic import temp_owner_pid

# A temp file this old is stale even if its pid is alive (pids are reused; writes take seconds).
STALE_TEMP_AGE_S = 3600.0

NoteAction = Literal["removed_temp", "moved_aside", "unreadable", "split"]


@dataclass(frozen=True, slots=True)
class RecoveryNote:
    """One repair the store made (or could not make) to the dataset."""

    path: Path  # the file concerned
    action: NoteAction  # removed_temp | moved_aside | unreadable (could not be moved) | split
    reason: str  # why, in a few words
    moved_to: Path | None = None  # where a moved-aside file now is

    def __str__(self) -> str:
        if self.action == "removed_temp":
            return f"removed stale temp file {self.path} ({self.reason})"
        if self.action == "moved_aside":
            return (
                f"moved unreadable file {self.path} aside to {self.moved_to} ({self.reason}); "
                "its range will be re-fetched"
            )
        if self.action == "split":
            return f"split {self.path} into day files ({self.reason})"
        return f"unreadable file {self.path} ignored ({self.reason})"


def is_stale_temp(path: Path, now_s: float | None = None) -> bool:
    """True for one of our temp files whose writer is gone (or that is too old to be live)."""
    pid = temp_owner_pid(path.name)
    if pid is None:
        return False
    try:
        age = (time.time() if now_s is None else now_s) - path.stat().st_mtime
    except FileNotFoundError:
        return False
    if age > STALE_TEMP_AGE_S:
        return True
    return pid != os.getpid() and not pid_alive(pid)


def remove_stale_temps(directory: Path) -> list[RecoveryNote]:
    """Delete stale temp files directly inside `directory`."""
    notes: list[RecoveryNote] = []
    try:
        paths = sorted(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return notes
    for path in paths:
        if is_stale_temp(path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                notes.append(RecoveryNote(path, "removed_temp", "left by an interrupted write"))
    return notes


def check_readable(path: Path, schema: pa.Schema, deep: bool) -> str | None:
    """None if `path` looks like a good partition of `schema`, else the reason it is not.

    The shallow check reads the footer (which a torn or truncated file lacks) and the column
    names; `deep` also decodes every page.
    """
    try:
        if deep:
            # (ParquetFile, not read_table: that imports pyarrow.dataset, and with it pandas)
            with pq.ParquetFile(path) as pf:
                table = pf.read(columns=schema.names, use_threads=False)
            table.cast(schema)
            return None
        meta = pq.read_metadata(path)
        names = set(meta.schema.to_arrow_schema().names)
    except FileNotFoundError:
        return None
    except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
        text = str(exc)
        return text.splitlines()[0] if text else type(exc).__name__
    missing = [n for n in schema.names if n not in names]
    return f"missing columns {', '.join(missing)}" if missing else None


def walk_dirs(root: Path, depth: int) -> Iterator[Path]:
    """Every directory exactly `depth` levels below `root` (series directories), sorted."""
    if depth == 0:
        if root.is_dir():
            yield root
        return
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return
    for child in children:
        yield from walk_dirs(child, depth - 1)
