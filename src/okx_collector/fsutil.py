"""Small filesystem helpers shared by the two writers (the store and the qlib exporter)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Folders fsynced at once by `fsync_dirs`: ext4 commits concurrent fsyncs in one journal
# transaction, so 2,000 folders take ~0.8 s on 32 threads where one at a time takes ~2.7 s
# (benchmarks/README.md, "compact.py"); the threads only wait, they use no CPU.
SYNC_THREADS = 32


def fsync_dir(directory: Path) -> None:
    """Persist a rename or creation in `directory` (best effort on exotic filesystems)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dirs(directories: Iterable[Path], threads: int = SYNC_THREADS) -> None:
    """`fsync_dir` of many folders, concurrently; durable all of them when it returns."""
    todo = list(directories)
    if len(todo) <= 1:
        for directory in todo:
            fsync_dir(directory)
        return
    with ThreadPoolExecutor(min(threads, len(todo)), thread_name_prefix="fsync") as pool:
        for _ in pool.map(fsync_dir, todo):
            pass


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a temp file's writer may still be running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True
