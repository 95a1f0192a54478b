"""What the live writer does between closes: freed pages go back to the system once per burst of
writes, when its queue has gone idle, so that memory between closes stays at its settled level."""

from __future__ import annotations

import asyncio
from pathlib import Path

from okx_collector.live.writer import IDLE_S, Item, Writer
from okx_collector.models import Candle
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe

M1 = Timeframe.parse("1m")
HOUR = 1_795_262_400_000 + 86_400_000  # 2026-11-22 12:00 UTC


class GivingBackStore(Store):
    """A real store that counts the writer's requests to give memory back."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.given_back = 0

    def give_back_memory(self) -> None:
        self.given_back += 1
        super().give_back_memory()


def test_memory_is_given_back_once_after_each_burst_of_writes(tmp_path: Path) -> None:
    store = GivingBackStore(tmp_path / "data")
    ids = [f"SIM{i:04d}-USDT" for i in range(20)]

    async def close(writer: Writer, k: int) -> None:
        for inst_id in ids:
            row = Candle(HOUR + k * M1.ms, 1.0 + k, 9.0, 0.5, 1.5, 10.0, 15.0, "ws")
            assert writer.offer(Item("candles", inst_id, M1, [row]))

    async def run() -> list[int]:
        writer = Writer([store], now=lambda: HOUR + 10 * M1.ms)
        task = asyncio.create_task(writer.run())
        seen = [store.given_back]
        for k in range(2):
            await close(writer, k)
            await asyncio.sleep(IDLE_S * 2.5)  # idle long enough, and then some
            seen.append(store.given_back)
        await writer.stop()
        await task
        return seen

    assert asyncio.run(run()) == [0, 1, 2]
    assert Store(tmp_path / "data").candle_timestamps(ids[0], M1).tolist() == [HOUR, HOUR + M1.ms]
