"""Sharing a close between several writers: each series goes to the same one, the first takes
its share, a writer that falls behind gives the tail of its share to the others, and what they
store together equals what one store alone would."""

from __future__ import annotations

import asyncio
import time
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


class SlowStore(CountingStore):
    """A real store whose writes take a while longer (a process busy with something else)."""

    def write_candles_many(self, items):  # type: ignore[no-untyped-def]
        time.sleep(0.1)
        return super().write_candles_many(items)


def close_rows(k: int) -> Candle:
    return Candle(HOUR + k * M1.ms, 1.0 + k, 9.0, 0.5, 1.5, 10.0, 15.0, "ws")


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
                assert writer.offer(Item("candles", inst_id, M1, [close_rows(k)]))
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


def test_a_writer_that_falls_behind_gives_its_tail_to_the_other(tmp_path: Path) -> None:
    data = tmp_path / "data"
    slow, fast = SlowStore(data), CountingStore(data)
    ids = [f"SIM{i:04d}-USDT" for i in range(400)]
    own = {i for i in ids if route([slow, fast], i, M1) is fast}

    async def run() -> None:
        writer = Writer([slow, fast], now=lambda: HOUR + 10 * M1.ms)
        task = asyncio.create_task(writer.run())
        for inst_id in ids:  # one close, queued before the writer wakes: one batch
            assert writer.offer(Item("candles", inst_id, M1, [close_rows(0)]))
        await writer.stop()
        await task
        assert writer.stats.rows_written == len(ids)

    asyncio.run(run())
    assert own < fast.series  # all of its own share, and some of the slow one's
    assert slow.series | fast.series == set(ids)
    assert not slow.series & fast.series  # each series written once
    reader = Store(data)
    for inst_id in ids:
        assert reader.candle_timestamps(inst_id, M1).tolist() == [HOUR]
