"""Sharing a close between several writers: each series always goes to the same one, the first
takes its share, and what they store together equals what one store alone would."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from okx_collector.live.writer import FIRST_SHARE, Item, Writer, route
from okx_collector.models import Candle
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe

M1 = Timeframe.parse("1m")
HOUR = 1_795_262_400_000 + 86_400_000  # 2026-11-22 12:00 UTC


class CountingStore(Store):
    """A real store that remembers which series it was asked to write."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.series: set[str] = set()

    def write_candles_many(self, items):  # type: ignore[no-untyped-def]
        self.series.update(inst_id for inst_id, _, _ in items)
        return super().write_candles_many(items)


def test_route_is_stable_and_gives_the_first_store_its_share() -> None:
    ids = [f"SIM{i:04d}-USDT" for i in range(3000)]
    stores = ["child", "main"]
    picks = [route(stores, i, M1) for i in ids]  # type: ignore[arg-type]
    assert picks == [route(stores, i, M1) for i in ids]  # type: ignore[arg-type]
    share = Counter(picks)["child"] / len(ids)
    assert abs(share - FIRST_SHARE) < 0.03
    assert route(["only"], ids[0], M1) == "only"  # type: ignore[arg-type,comparison-overlap]


def test_a_close_shared_by_two_writers_is_stored_whole(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first, second = CountingStore(data), CountingStore(data)
    ids = [f"SIM{i:04d}-USDT" for i in range(60)]

    async def run() -> None:
        writer = Writer([first, second], now=lambda: HOUR + 10 * M1.ms)
        task = asyncio.create_task(writer.run())
        for k in range(3):  # three closes
            for inst_id in ids:
                row = Candle(HOUR + k * M1.ms, 1.0 + k, 9.0, 0.5, 1.5, 10.0, 15.0, "ws")
                assert writer.offer(Item("candles", inst_id, M1, [row]))
        await writer.stop()
        await task
        assert writer.stats.rows_written == 3 * len(ids)

    asyncio.run(run())
    assert first.series and second.series and not first.series & second.series
    assert first.series | second.series == set(ids)
    reader = Store(data)
    for inst_id in ids:
        assert reader.candle_timestamps(inst_id, M1).tolist() == [
            HOUR + k * M1.ms for k in range(3)
        ]
