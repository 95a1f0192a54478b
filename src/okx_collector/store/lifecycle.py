"""Which stored instruments OKX has delisted, and when that was noticed: `DATA_DIR/delisted.json`.

OKX does not say when an instrument was delisted; it just leaves its instrument list. The
collector records the exchange time at which it first found an instrument gone (and the open of
its last stored candle, for the reader), so that `status` shows a delisted series as delisted
instead of stale, and exports keep it as a series that ended. The file is small JSON, replaced
atomically; a relisted instrument is removed from it.

    {"version": 1, "delisted": {"DOT-USDT": {"noticed_ms": 1764716400000}}}
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from okx_collector.fsutil import fsync_dir
from okx_collector.store.atomic import storage_error

FILE_NAME = "delisted.json"
VERSION = 1
# Backfill's workers may record two delistings at once (from threads): one read-modify-write at
# a time, or one would replace the other's temp file and lose its entry.
_LOCK = threading.Lock()


def read_delisted(data_dir: Path) -> dict[str, int]:
    """instId -> exchange ms at which its delisting was noticed; {} when none (or unreadable:
    a damaged record only loses the labels, never data, and is rewritten at the next notice)."""
    try:
        payload = json.loads((data_dir / FILE_NAME).read_text())
        entries = payload["delisted"]
        return {str(k): int(v["noticed_ms"]) for k, v in entries.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def record_delisted(data_dir: Path, inst_id: str, noticed_ms: int) -> bool:
    """Record `inst_id` as delisted (keeping an earlier notice); True if it was not recorded yet."""
    with _LOCK:
        current = read_delisted(data_dir)
        if inst_id in current:
            return False
        current[inst_id] = noticed_ms
        _write(data_dir, current)
        return True


def forget_delisted(data_dir: Path, inst_id: str) -> bool:
    """OKX lists `inst_id` again: drop its record; True if there was one."""
    with _LOCK:
        current = read_delisted(data_dir)
        if current.pop(inst_id, None) is None:
            return False
        _write(data_dir, current)
        return True


def _write(data_dir: Path, entries: dict[str, int]) -> None:
    path = data_dir / FILE_NAME
    tmp = path.with_name(f".{FILE_NAME}.tmp-{os.getpid()}")
    body = {
        "version": VERSION,
        "delisted": {k: {"noticed_ms": v} for k, v in sorted(entries.items())},
    }
    try:
        with tmp.open("w") as handle:
            json.dump(body, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise storage_error(path, "write", exc) from exc
    fsync_dir(data_dir)
