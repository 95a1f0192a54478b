"""Where a candle series starts: `.series.json` beside its partitions.

A partition that is lost (unreadable, then moved aside) takes its rows with it; if it was the
series' first one, the series would simply seem to start later, and `status` would report no gap
for what is missing. So the series' first stored open time is recorded on its own, in a small
hidden file (not `*.parquet`: no dataset reader sees it), written when a compaction stores rows
older than it (atomically: temp, fsync, rename, fsync the folder). The expected start of a series
(`Store.expected_first_ts`) is the older of that record and the first stored row; for a data dir
written before the record existed, the span of a first partition that cannot be read and of a
moved-aside file (`.NAME.parquet.corrupt-...`) count instead (and start-up recovery records it).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from okx_collector.fsutil import fsync_dir
from okx_collector.store.atomic import storage_error, temp_name
from okx_collector.store.layout import Period, partition_from_filename

META_NAME = ".series.json"
_CORRUPT_MARK = ".corrupt-"


def read_first(directory: Path) -> int | None:
    """The recorded first open time of the series in `directory`, if any (None if unreadable)."""
    try:
        data = json.loads((directory / META_NAME).read_text())
        value = data.get("first_ts")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def record_first(directory: Path, first_ts: int) -> None:
    """Record `first_ts` as the series' first open time (durable on return)."""
    path = directory / META_NAME
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            os.write(fd, json.dumps({"first_ts": first_ts}).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise storage_error(path, "write", exc) from exc
    fsync_dir(directory)


def lost_starts(directory: Path, period: Period) -> list[int]:
    """The start of the span of every moved-aside partition file in `directory`."""
    found = []
    try:
        names = [p.name for p in directory.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for name in names:
        if not name.startswith(".") or _CORRUPT_MARK not in name:
            continue
        original = name[1:].split(_CORRUPT_MARK, 1)[0]
        part = partition_from_filename(original, period)
        if part is not None:
            found.append(part.start)
    return found
