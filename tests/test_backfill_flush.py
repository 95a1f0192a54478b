"""The backfill writer's flush rule on a stepped local clock: a series' buffered candles are
written once the oldest of them is FLUSH_SECONDS old on the backfill's clock (checked as pages
arrive), the rest at the end. The exchange and the store are small objects with the calls of
the backfill's seams (`BackfillExchange`, `BackfillStore`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from okx_collector.backfill.planner import PAGE_BARS
from okx_collector.backfill.progress import SilentProgress
from okx_collector.backfill.runner import FLUSH_SECONDS, Backfiller
from okx_collector.instruments import Instrument
from okx_collector.localclock import SteppedClock, settle
from okx_collector.models import Candle, FundingRate, RawCandle, Source
from okx_collector.timeframes import MINUTE_MS, Timeframe
from tests.clock_helpers import until

TF1 = Timeframe.parse("1m")
BTC = Instrument("BTC/USDT", "BTC-USDT", True, quote="USDT")
NOW = 1_790_000_000_000 // MINUTE_MS * MINUTE_MS
SINCE = NOW - 3 * PAGE_BARS * MINUTE_MS  # three pages, all recent


class Pages:
    """Answers each page once the test releases it (by its start)."""

    requests = 0

    def __init__(self) -> None:
        self.released: dict[int, asyncio.Event] = {}

    def gate(self, start: int) -> asyncio.Event:
        return self.released.setdefault(start, asyncio.Event())

    async def fetch_candles(
        self, inst: Instrument, tf: Timeframe, start: int, end: int, *, recent: bool,
        source: Source,
    ) -> list[RawCandle]:  # fmt: skip
        await self.gate(start).wait()
        return [
            RawCandle(Candle(ts, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, source), True)
            for ts in range(start, end, tf.ms)
        ]

    async def newest_open_before(self, inst: Instrument, tf: Timeframe, ts: int) -> int | None:
        raise AssertionError("every page holds candles: nothing to probe")

    async def fetch_funding_history(
        self, inst: Instrument, start: int, end: int, source: Source = "backfill"
    ) -> list[FundingRate]:
        return []


class Writes:
    """Records the size of each candle write."""

    data_dir = Path("unused")

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def candle_timestamps(
        self, inst_id: str, tf: Timeframe, start: int | None = None, end: int | None = None
    ) -> npt.NDArray[np.int64]:
        return np.array([], dtype=np.int64)

    def expected_first_ts(self, inst_id: str, tf: Timeframe) -> int | None:
        return None

    def write_candles(self, inst_id: str, tf: Timeframe, candles: Sequence[Candle]) -> int:
        self.sizes.append(len(candles))
        return len(candles)

    def write_funding(self, inst_id: str, rates: Sequence[FundingRate]) -> int:
        return 0


async def test_buffered_candles_are_flushed_by_age_on_the_backfill_clock() -> None:
    clock, pages, writes = SteppedClock(), Pages(), Writes()
    backfiller = Backfiller(pages, writes, SilentProgress(), clock=clock)
    run = asyncio.create_task(backfiller.run([(BTC, TF1)], [], SINCE, NOW, NOW))
    starts = [SINCE + i * PAGE_BARS * MINUTE_MS for i in range(3)]
    pages.gate(starts[0]).set()
    await until_written(backfiller, PAGE_BARS)  # buffered: young, and far below FLUSH_ROWS
    await clock.advance(FLUSH_SECONDS - 0.01)
    pages.gate(starts[1]).set()
    await until_written(backfiller, 2 * PAGE_BARS)
    assert writes.sizes == []  # the oldest buffered is not FLUSH_SECONDS old yet
    await clock.advance(0.01)
    pages.gate(starts[2]).set()  # its arrival finds the buffer old enough: all three written
    report = await asyncio.wait_for(run, 10)
    assert writes.sizes == [3 * PAGE_BARS] and report.written == 3 * PAGE_BARS


async def test_the_flush_age_counts_from_the_first_buffered_page() -> None:
    clock, pages, writes = SteppedClock(), Pages(), Writes()
    backfiller = Backfiller(pages, writes, SilentProgress(), clock=clock)
    run = asyncio.create_task(backfiller.run([(BTC, TF1)], [], SINCE, NOW, NOW))
    starts = [SINCE + i * PAGE_BARS * MINUTE_MS for i in range(3)]
    pages.gate(starts[0]).set()
    await until_written(backfiller, PAGE_BARS)
    await clock.advance(FLUSH_SECONDS)
    pages.gate(starts[1]).set()  # two pages, the first FLUSH_SECONDS old: written together
    await until_written(backfiller, 2 * PAGE_BARS)
    await until(lambda: writes.sizes == [2 * PAGE_BARS], "the first two pages written")
    pages.gate(starts[2]).set()  # a new buffer, young: written at the end
    await asyncio.wait_for(run, 10)
    assert writes.sizes == [2 * PAGE_BARS, PAGE_BARS]


async def until_written(backfiller: Backfiller, candles: int) -> None:
    """Until the fetchers have handed `candles` to the writer, and it has taken them."""
    await until(lambda: backfiller.report.candles >= candles, f"{candles} candles fetched")
    await settle()
