"""Paging OKX history back from the end of a range, by what came back (pure; no I/O of its own).

OKX answers a history request with the newest rows of an exclusive window, at most a page of
them, and has capped pages below its documented maximum before (OKX.md §7). So a range is paged
from its end, each next window ending at the oldest row the last one brought, until the range is
covered or OKX has nothing older (before the listing, or a hole in its data): a smaller page costs
requests, never rows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


async def page_back(
    fetch: Callable[[int], Awaitable[Sequence[T]]],
    ts_of: Callable[[T], int],
    start: int,
    end: int,
    *,
    keep: Callable[[int], bool] | None = None,
    exhausted: Callable[[], bool] | None = None,
) -> list[T]:
    """Every row with `ts_of(row)` in [start, end), oldest first, one per ts.

    `fetch(after)` asks for one page of [start, after). A row whose ts `keep` refuses is not
    returned but still moves the window (OKX sent it, so nothing newer is missing). When a page
    brings nothing in the window, `exhausted()` may switch the source `fetch` reads and return
    True to ask again from the same point; otherwise paging stops there.
    """
    out: dict[int, T] = {}
    after = end
    while after > start:
        window = [row for row in await fetch(after) if start <= ts_of(row) < after]
        if not window:
            if exhausted is not None and exhausted():
                continue
            break
        for row in window:
            ts = ts_of(row)
            if keep is None or keep(ts):
                out[ts] = row
        after = min(ts_of(row) for row in window)
    return [out[ts] for ts in sorted(out)]
