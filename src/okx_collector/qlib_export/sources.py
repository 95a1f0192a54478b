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
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

SOURCES_FILE = ".okx-collector-sources.json"
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

    def __init__(self, timeframe: str, others: dict[str, object], known: dict[str, object]) -> None:
        self.timeframe = timeframe
        self._others = others  # other timeframes' entries, kept as they are
        self._known = known  # month key -> [[file sig, ...], sha256] from the file
        self._now = time.time_ns()  # wall time of this export's start, for the racy rule
        self._kept: dict[str, list[object]] = {}  # entries confirmed or learned in this run

    @classmethod
    def load(cls, out: Path, timeframe: str) -> SourceCache:
        """Read the cache (a missing or damaged one is an empty one)."""
        doc: object = {}
        with contextlib.suppress(OSError, ValueError):
            doc = json.loads((out / SOURCES_FILE).read_bytes())
        groups = doc if isinstance(doc, dict) else {}
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

    def remember(self, key: str, before: Sig | None, after: Sig | None, sha256: str) -> None:
        """Record that the month `key`, read between identities `before` and `after`, held
        `sha256` (not if a file changed meanwhile or too recently to trust its times)."""
        if before is None or before != after:
            return
        if any(f[3] > self._now - RACY_NS for f in before):
            return
        self._kept[key] = [[list(f) for f in before], sha256]

    def dumps(self) -> bytes:
        groups = dict(self._others)
        groups[self.timeframe] = self._kept
        return (json.dumps(groups, sort_keys=True) + "\n").encode()
