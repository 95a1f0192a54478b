"""`page_back`: paging a range back from its end by what came back, whatever the page size."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from okx_collector.paging import page_back

Fetch = Callable[[int], Awaitable[list[int]]]


def newest_first(rows: list[int], cap: int) -> tuple[Fetch, list[int]]:
    """A fake history endpoint: the newest `cap` of `rows` before `after` (OKX's answer shape)."""
    asked: list[int] = []

    async def fetch(after: int) -> list[int]:
        asked.append(after)
        return sorted((r for r in rows if r < after), reverse=True)[:cap]

    return fetch, asked


async def test_small_pages_cost_requests_never_rows() -> None:
    fetch, asked = newest_first(list(range(0, 100, 10)), cap=3)
    assert await page_back(fetch, int, 20, 100) == [20, 30, 40, 50, 60, 70, 80, 90]
    assert asked == [100, 70, 40]  # the last page reached `start`: no fourth


async def test_stops_when_nothing_older_comes() -> None:
    fetch, asked = newest_first([50, 60], cap=5)
    assert await page_back(fetch, int, 0, 100) == [50, 60]
    assert asked == [100, 50]


async def test_refused_rows_still_move_the_window() -> None:
    fetch, asked = newest_first([10, 15, 20, 30], cap=2)
    assert await page_back(fetch, int, 0, 40, keep=lambda ts: ts % 10 == 0) == [10, 20, 30]
    assert asked == [40, 20, 10]


async def test_exhausted_switches_source_and_asks_again_from_the_same_point() -> None:
    recent, recent_asked = newest_first([70, 80, 90], cap=2)
    history, history_asked = newest_first([40, 50, 60, 70], cap=2)
    source = [recent]

    async def fetch(after: int) -> list[int]:
        return await source[0](after)

    def exhausted() -> bool:
        if source[0] is history:
            return False
        source[0] = history
        return True

    assert await page_back(fetch, int, 45, 100, exhausted=exhausted) == [50, 60, 70, 80, 90]
    assert recent_asked == [100, 80, 70]
    assert history_asked == [70, 50]
