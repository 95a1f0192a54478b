"""What a process and its children cost, from /proc (Linux): CPU seconds and memory.

Memory is the process's RSS plus its children's private pages: the collector's writer process
shares pyarrow's and numpy's library pages with its parent, and counting those twice would
overstate what the machine spends.
"""

from __future__ import annotations

import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The live child processes of `pid`."""
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process and of its live children."""
    total = 0.0
    for one in (pid, *children(pid)):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def _rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup in kB."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value, *_ = line.split()
        out[key.rstrip(":")] = int(value)
    return out


def memory_mb(pid: int) -> tuple[float, float]:
    """(RSS of `pid` + its children's private pages, those private pages alone), in MB."""
    rss = _rollup(pid)["Rss"]
    private = 0
    for child in children(pid):
        try:
            r = _rollup(child)
        except OSError:
            continue
        private += r["Private_Clean"] + r["Private_Dirty"]
    return (rss + private) / 1024, private / 1024
