"""Which store months are known unchanged since the last export, without reading them.

An incremental export must notice data that changed inside the range it already exported (a repaired
gap, a revised candle), but reading every month back from Parquet would make its cost grow with the
history instead of the new bars. So, like `make` and git's index, it remembers the identity (name,
inode, size, mtime, ctime) of each partition file holding a month (one file; an older layout's day
files until migrated) next to the checksum of the month's candles. A month whose files are unchanged
and whose remembered checksum is the one in the manifest is skipped; any other is read and compared.

The store replaces a partition by `os.replace` of a new file, so every write changes the inode
and the times. A file modified within `RACY_NS` of the moment its identity was taken might
change again within the file system's timestamp granularity, so such a file is not remembered
(git's "racy clean" rule). The cache lives in `DIR/.okx-collector-sources.json`: machine-local,
outside the deterministic manifest, and safe to delete (the next export reads everything once).

Two more kinds of entries make an append cost the new bars rather than the last month and the
whole files:

- a *prefix* of the newest month: the identity of the files holding the month up to the start of
  the UTC day of its last candle, with the month summary's state there (`arrays.MonthAcc.save`).
  While those files are unchanged, an update reads from that day on only;
- a feature file's `HashPoint`: the SHA-256 state near its end, for the file as last written
  (`files.hash_file`).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from okx_collector.qlib_export.files import HashPoint, Ident

SOURCES_FILE = ".okx-collector-sources.json"
VERSION = 2  # a cache of another version is dropped (it only costs one slower export)
RACY_NS = 2_000_000_000  # 2 s: far above any file system's timestamp granularity

FileSig = tuple[str, int, int, int, int]  # (name, st_ino, st_size, st_mtime_ns, st_ctime_ns)
Sig = tuple[FileSig, ...]  # the files holding one month of a series (1m: a file per day)


def files_sig(paths: list[Path]) -> Sig | None:
    """The identity of the files at `paths` now, None if one of them is gone."""
    sig = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            return None
        sig.append((path.name, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(sig)


class SourceCache:
    """Month identities -> candle checksums, for one timeframe of one export directory."""

    def __init__(self, timeframe: str, others: dict[str, object], mine: dict[str, Any]) -> None:
        self.timeframe = timeframe
        self._others = others  # other timeframes' entries, kept as they are
        self._known = _section(mine, "months")  # month key -> [[file sig, ...], sha256]
        self._prefixes = _section(mine, "prefixes")  # month key -> [[file sig, ...], day, acc]
        self._points = _section(mine, "files")  # relative path -> [ident, offset, state]
        self._now = time.time_ns()  # wall time of this export's start, for the racy rule
        self._kept: dict[str, list[object]] = {}  # entries confirmed or learned in this run
        self._kept_prefixes: dict[str, list[object]] = {}
        self._kept_points: dict[str, list[object]] = {}

    @classmethod
    def load(cls, out: Path, timeframe: str) -> SourceCache:
        """Read the cache (a missing, damaged or older one is an empty one)."""
        doc: object = {}
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads((out / SOURCES_FILE).read_bytes())
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            doc = {}
        groups = doc.get("timeframes") if isinstance(doc, dict) else None
        groups = dict(groups) if isinstance(groups, dict) else {}
        mine = groups.pop(timeframe, {})
        return cls(timeframe, groups, mine if isinstance(mine, dict) else {})

    def unchanged(self, key: str, now: Sig | None, sha256: str) -> bool:
        """True if the month `key`, whose files have identity `now`, held checksum `sha256`."""
        entry = self._known.get(key)
        if now is None or not isinstance(entry, list) or len(entry) != 2 or entry[1] != sha256:
            return False
        if entry[0] != [list(f) for f in now]:
            return False
        self._kept[key] = entry
        return True

    def remember(self, key: str, before: Sig | None, sha256: str) -> None:
        """Record that the month `key`, whose files had identity `before` when listed before
        the read, held `sha256` (not if a file changed too recently to trust its times).

        A file replaced between that listing and the read has another identity (the store
        replaces files by rename: another inode, other times), as has a file added meanwhile to
        the month: the next export sees the difference and reads the month again."""
        if before is None:
            return
        if any(f[3] > self._now - RACY_NS for f in before):
            return
        self._kept[key] = [[list(f) for f in before], sha256]

    def prefix(
        self, key: str, sig_before: Callable[[int], Sig | None]
    ) -> tuple[int, dict[str, Any]] | None:
        """The saved prefix of month `key` (its end, a day start, and the `MonthAcc` state) if
        the files holding the month before that day still have the identity they had then
        (`sig_before(day)` gives it now), else None."""
        entry = self._prefixes.get(key)
        if not isinstance(entry, list) or len(entry) != 3:
            return None
        sigs, day, acc = entry
        if not isinstance(day, int) or not isinstance(acc, dict):
            return None
        now = sig_before(day)
        if now is None or sigs != [list(f) for f in now]:
            return None
        return day, acc

    def remember_prefix(
        self, key: str, before: Sig | None, day: int, acc: dict[str, Any] | None
    ) -> None:
        """Record the state `acc` of month `key` up to `day`, read from files that had identity
        `before` when listed (as `remember`)."""
        if acc is None or before is None:
            return
        if any(f[3] > self._now - RACY_NS for f in before):
            return
        self._kept_prefixes[key] = [[list(f) for f in before], day, acc]

    def point(self, rel: str, now: Ident | None) -> HashPoint | None:
        """The hash point saved for the file `rel` if it still has identity `now`."""
        entry = self._points.get(rel)
        if now is None or not isinstance(entry, list) or len(entry) != 3:
            return None
        found, offset, state = entry
        if found != list(now) or not isinstance(offset, int) or not isinstance(state, str):
            return None
        return HashPoint(now, offset, state)

    def keep_point(self, rel: str, point: HashPoint | None) -> None:
        if point is not None:
            self._kept_points[rel] = [list(point.ident), point.offset, point.state]

    def dumps(self) -> bytes:
        groups = dict(self._others)
        groups[self.timeframe] = {
            "months": self._kept,
            "prefixes": self._kept_prefixes,
            # A point of a file not touched by this run stays valid while the file is the same.
            "files": {**self._points, **self._kept_points},
        }
        doc = {"version": VERSION, "timeframes": groups}
        return (json.dumps(doc, sort_keys=True) + "\n").encode()


def _section(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found = doc.get(name)
    return found if isinstance(found, dict) else {}
