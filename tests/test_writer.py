"""The live writer: a close's burst becomes one journal file, written in queue order."""

from __future__ import annotations

import asyncio
from pathlib import Path

from okx_collector.live.writer import Item, Writer
from okx_collector.models import Candle, FundingObservation
from okx_collector.store import Store
from okx_collector.store.journal import list_journal
from okx_collector.timeframes import Timeframe

M1 = Timeframe.parse("1m")
T0 = 1_795_262_400_000  # 2026-11-21 12:00 UTC


def candle(ts: int, close: float, source: str = "ws") -> Candle:
    return Candle(ts, close, close + 1, close - 1, close, 1.0, close, source)  # type: ignore[arg-type]


def test_a_close_of_many_series_is_one_journal_file(tmp_path: Path) -> None:
    store = Store(tmp_path)
    ids = [f"SIM{i:04d}-USDT" for i in range(300)]

    async def run() -> Writer:
        writer = Writer(store, now=lambda: T0 + 2 * M1.ms + 150)
        task = asyncio.create_task(writer.run())
        for inst_id in ids:  # one close: every series' candle, then a funding push
            assert writer.offer(Item("candles", inst_id, M1, [candle(T0 + M1.ms, 1.0)]))
        obs = FundingObservation(T0, T0 + 3_600_000, 1e-4, None, None, "ws")
        assert writer.offer(Item("funding_live", "SIM0000-USDT-SWAP", None, [obs]))
        await writer.stop()
        await task
        return writer

    writer = asyncio.run(run())
    assert len(list_journal(tmp_path, "candles")) == 1
    assert len(list_journal(tmp_path, "funding_live")) == 1
    assert writer.stats.rows_written == 301 and writer.stats.writes == 2
    assert writer.stats.take_delays() == [150] * 300  # close -> durable, by the injected clock
    assert store.last_candle_ts("SIM0299-USDT", M1) == T0 + M1.ms


def test_a_later_value_of_a_candle_wins_in_queue_order(tmp_path: Path) -> None:
    """A websocket value, then a REST correction of the same candle, in separate batches: the
    journal keeps their order, so the correction wins, before and after a compaction."""
    store = Store(tmp_path)

    async def run() -> None:
        for close in (1.0, 2.0, 3.0):  # each value its own batch (a writer run each)
            writer = Writer(store, now=lambda: T0)
            task = asyncio.create_task(writer.run())
            await writer.put(Item("candles", "BTC-USDT", M1, [candle(T0, close, "ws")]))
            await writer.stop()
            await task

    asyncio.run(run())
    assert len(list_journal(tmp_path, "candles")) == 3
    assert store.read_candles("BTC-USDT", M1).column("close").to_pylist() == [3.0]
    store.compact()
    assert store.read_candles("BTC-USDT", M1).column("close").to_pylist() == [3.0]
