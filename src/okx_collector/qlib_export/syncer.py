"""Making the export's feature files durable in background threads (`files` hands them over)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from okx_collector.fsutil import fsync_dir
from okx_collector.qlib_export.files import export_error


class Syncer:
    """fsyncs files and folders in background threads; `wait` says when all are durable."""

    def __init__(self, workers: int = 8) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="qlib-fsync")
        self._pending: list[Future[None]] = []
        self._lock = threading.Lock()  # guards _pending (writers call from several threads)

    def __enter__(self) -> Syncer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)  # (every job closes its descriptor, even after a failure)

    def fd(self, fd: int, path: Path) -> None:
        """fsync and close `fd` (open on `path`, which names it in an error); owns `fd` now."""

        def job() -> None:
            try:
                os.fsync(fd)
            except OSError as exc:
                raise export_error(path, "sync", exc) from exc
            finally:
                os.close(fd)

        with self._lock:
            self._pending.append(self._pool.submit(job))

    def folder(self, directory: Path) -> None:
        """Persist the renames and creations in `directory`."""
        with self._lock:
            self._pending.append(self._pool.submit(fsync_dir, directory))

    def wait(self) -> None:
        """Return once everything handed over so far is durable; raise the first failure."""
        with self._lock:
            pending, self._pending = self._pending, []
        for f in pending:
            f.result()
