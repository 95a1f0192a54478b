"""The export directory itself: is it ours, one exporter at a time, and the crash journal."""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path

from okx_collector.errors import BadInput, EnvironmentProblem
from okx_collector.fsutil import fsync_dir
from okx_collector.qlib_export.files import export_error, make_dirs, remove, write_atomic
from okx_collector.qlib_export.manifest import (
    MANIFEST,
    Manifest,
    NotOurs,
    StaleManifest,
    journal_path,
    loads,
)
from okx_collector.qlib_export.sources import SOURCES_FILE

LOCK_FILE = ".okx-collector.lock"
_JOURNAL_PREFIX = journal_path(Path(), "").name  # ".okx-collector-incomplete-"
_OUR_HIDDEN = (LOCK_FILE, SOURCES_FILE)


def _refuse(out: Path, why: str) -> BadInput:
    return BadInput(
        f"refusing to write a qlib export into {out}: {why}; "
        "choose a new or empty directory with --out"
    )


def read_state(out: Path) -> tuple[Manifest | None, str | None]:
    """The manifest of the export in `out` (None for a new or empty directory) and a note.

    Raises `BadInput` if `out` holds anything that is not an export of ours: it is never
    overwritten. Our manifest of another format version comes back empty (everything is
    rewritten), with a note saying so.
    """
    if not out.exists():
        return None, None
    if not out.is_dir():
        raise _refuse(out, "it exists and is not a directory")
    try:
        names = sorted(p.name for p in out.iterdir())
    except OSError as exc:
        raise export_error(out, "list", exc) from exc
    if MANIFEST in names:
        try:
            data = (out / MANIFEST).read_bytes()
        except OSError as exc:
            raise export_error(out / MANIFEST, "read", exc) from exc
        try:
            return loads(data), None
        except NotOurs as exc:
            raise _refuse(out, f"its {MANIFEST} was not written by okx-collector ({exc})") from exc
        except StaleManifest as exc:
            return Manifest(version=""), f"previous export not reusable ({exc}); rewriting it"
    if any(n.startswith(_JOURNAL_PREFIX) for n in names):
        return None, "an earlier export into this directory was interrupted; rewriting it"
    if any(n not in _OUR_HIDDEN for n in names):
        raise _refuse(out, f"it is not empty and has no {MANIFEST} of an okx-collector export")
    return None, None


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold the directory's export lock: two exports into one directory would tear it."""
    make_dirs(out)
    try:
        fh = (out / LOCK_FILE).open("a+b")
    except OSError as exc:
        raise export_error(out / LOCK_FILE, "open", exc) from exc
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise EnvironmentProblem(
                f"another export into {out} is running; wait for it to finish"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def interrupted(out: Path, timeframe: str) -> bool:
    """Did an export of `timeframe` stop before its manifest was written?"""
    return journal_path(out, timeframe).exists()


def begin(out: Path, timeframe: str) -> None:
    """Mark `timeframe`'s files as being modified (before the first change, durably)."""
    write_atomic(journal_path(out, timeframe), json.dumps({"timeframe": timeframe}).encode())
    fsync_dir(out)


def finish(out: Path, timeframe: str) -> None:
    """Clear the mark once the manifest describing the new files is in place."""
    remove(journal_path(out, timeframe))
    fsync_dir(out)
