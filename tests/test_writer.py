"""The live writer: a close's burst becomes one journal file, written in queue order."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from okx_collector.live.clock import ExchangeClock
from okx_collector.live.writer import GATHER_QUIET_S, HOLD_EVERY_S, HOLD_MAX_S, Item, Writer
from okx_collector.localclock import SteppedClock, settle
from okx_collector.models import Candle, FundingObservation, OpenInterest, PriceCandle
from okx_collector.ops.metrics import Metrics
from okx_collector.ops.stores import ObservedStore
from okx_collector.store import Store
from okx_collector.store.journal import list_journal
from okx_collector.timeframes import Timeframe

M1 = Timeframe.parse("1m")
T0 = 1_795_262_400_000  # 2026-11-21 12:00 UTC


def candle(ts: int, close: float, source: str = "ws") -> Candle:
    return Candle(ts, close, close + 1, close - 1, close, 1.0, close, source)  # type: ignore[arg-type]


def price(ts: int, close: float, source: str = "ws") -> PriceCandle:
    return PriceCandle(ts, close, close + 1, close - 1, close, source)  # type: ignore[arg-type]


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


def test_mark_index_and_open_interest_share_the_batch_and_are_observed(tmp_path: Path) -> None:
    """A close's burst of every kind: one journal file per kind, one store call each; the metrics
    count rows by kind and source and close->disk delays per kind; the writer's own delay figure
    (the live latency target) stays trade candles only."""
    store = Store(tmp_path)
    metrics = Metrics()
    now = T0 + 2 * M1.ms + 15_000  # 15 s after the close of the candle opening at T0 + M1
    clock = ExchangeClock(monotonic=lambda: 100.0)
    clock.sync(now)
    close = T0 + 2 * M1.ms
    oi_ws = OpenInterest(close, 1234.5, 12.345, 1e6, "ws")
    oi_poll = OpenInterest(close, 99.0, 0.99, 5e4, "poll")

    async def run() -> Writer:
        writer = Writer(ObservedStore(store, metrics, clock), now=lambda: now)
        task = asyncio.create_task(writer.run())
        for inst_id in ("BTC-USDT-SWAP", "ETH-USDT-SWAP"):
            assert writer.offer(Item("candles", inst_id, M1, [candle(T0 + M1.ms, 1.0)]))
            assert writer.offer(Item("mark_candles", inst_id, M1, [price(T0 + M1.ms, 2.0)]))
        assert writer.offer(Item("index_candles", "BTC-USDT", M1, [price(T0 + M1.ms, 3.0)]))
        assert writer.offer(Item("index_candles", "BTC-USDT", M1, [price(T0, 2.5, "backfill")]))
        assert writer.offer(Item("open_interest", "BTC-USDT-SWAP", M1, [oi_ws]))
        assert writer.offer(Item("open_interest", "ETH-USDT-SWAP", M1, [oi_poll]))
        await writer.stop()
        await task
        return writer

    writer = asyncio.run(run())
    for kind in ("candles", "mark_candles", "index_candles", "open_interest"):
        assert len(list_journal(tmp_path, kind)) == 1, kind
    assert writer.stats.writes == 4 and writer.stats.rows_written == 8
    assert writer.stats.take_delays() == [15_000, 15_000]  # the two trade candles only
    mark = store.read_price_candles("mark", "ETH-USDT-SWAP", M1)
    assert mark.column("ts").to_pylist() == [T0 + M1.ms] and mark.column("close")[0].as_py() == 2.0
    index = store.read_price_candles("index", "BTC-USDT", M1)
    assert index.column("close").to_pylist() == [2.5, 3.0]
    oi = store.read_open_interest("ETH-USDT-SWAP", M1)
    assert oi.column("oi_contracts").to_pylist() == [99.0] and oi.column("ts")[0].as_py() == close

    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    rows = {
        (s.labels["kind"], s.labels["source"]): s.value
        for s in families["okx_collector_rows_written"].samples
    }
    assert rows == {
        ("candles", "ws"): 2,
        ("mark_candles", "ws"): 2,
        ("index_candles", "ws"): 1,
        ("index_candles", "catchup"): 1,
        ("open_interest", "ws"): 1,
        ("open_interest", "poll"): 1,
    }
    delays = {
        (s.labels["kind"], s.labels["source"]): s.value
        for s in families["okx_collector_close_to_disk_seconds"].samples
        if s.name.endswith("_sum")
    }
    # Candles from their close (T0 + 2m), open interest from the close it is the value at.
    assert delays == {
        ("candles", "ws"): 30.0,
        ("mark_candles", "ws"): 30.0,
        ("index_candles", "ws"): 15.0,
        ("open_interest", "ws"): 15.0,
        ("open_interest", "poll"): 15.0,
    }


def test_a_later_mark_value_wins_in_queue_order(tmp_path: Path) -> None:
    """The precedence rule holds for the derived kinds too: batches in queue order, the later
    journal file wins, before and after a compaction."""
    store = Store(tmp_path)

    async def run() -> None:
        for close in (1.0, 2.0):
            writer = Writer(store, now=lambda: T0)
            task = asyncio.create_task(writer.run())
            await writer.put(Item("mark_candles", "BTC-USDT-SWAP", M1, [price(T0, close)]))
            await writer.stop()
            await task

    asyncio.run(run())
    assert len(list_journal(tmp_path, "mark_candles")) == 2

    def closes() -> list[float]:
        return store.read_price_candles("mark", "BTC-USDT-SWAP", M1).column("close").to_pylist()

    assert closes() == [2.0]
    store.compact()
    assert closes() == [2.0]


def test_a_burst_arriving_over_the_gather_window_is_one_batch(tmp_path: Path) -> None:
    """The writer waits while the queue grows (a close's confirms arrive one message at a time),
    on its injected clock: items offered between two quiet steps join the first item's batch;
    once the queue stops growing for a quiet step, the batch is written."""
    store = Store(tmp_path)

    async def run() -> None:
        clock = SteppedClock()
        writer = Writer(store, now=lambda: T0 + 2 * M1.ms, local=clock)
        task = asyncio.create_task(writer.run())
        for step in range(3):  # a burst over three quiet steps: it grows at each look
            for i in range(10):
                writer.offer(Item("candles", f"SIM{step}{i:03d}-USDT", M1, [candle(T0, 1.0)]))
            await settle()
            if step:
                await clock.advance(GATHER_QUIET_S)
        await asyncio.sleep(0.05)  # (a write taken too early would land on its thread meanwhile)
        assert writer.stats.writes == 0  # it grew at each look: still gathering
        await clock.advance(GATHER_QUIET_S)  # quiet for a step: taken
        for _ in range(100):
            if writer.stats.writes:
                break
            await asyncio.sleep(0.01)  # the write itself runs on the writer's thread
        assert writer.stats.writes == 1 and writer.stats.rows_written == 30
        await writer.stop()
        await task

    asyncio.run(run())
    assert len(list_journal(tmp_path, "candles")) == 1


class MeetingStore(Store):
    """A store whose trade and mark writes each wait until the other has begun: it finishes
    only when the writer writes a batch's kinds side by side."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.candles_began = threading.Event()
        self.marks_began = threading.Event()

    def write_candles_many(self, items):  # type: ignore[no-untyped-def]
        self.candles_began.set()
        assert self.marks_began.wait(10), "the mark write did not start beside the trade write"
        return super().write_candles_many(items)

    def write_price_candles_many(self, price, items):  # type: ignore[no-untyped-def]
        self.marks_began.set()
        assert self.candles_began.wait(10), "the trade write did not start beside the mark write"
        return super().write_price_candles_many(price, items)


def test_a_batch_writes_its_kinds_side_by_side(tmp_path: Path) -> None:
    """A close of trade and mark candles waits for one fsync, not one per kind."""
    store = MeetingStore(tmp_path)

    async def run() -> Writer:
        writer = Writer(store, now=lambda: T0 + 2 * M1.ms)
        task = asyncio.create_task(writer.run())
        assert writer.offer(Item("candles", "BTC-USDT-SWAP", M1, [candle(T0 + M1.ms, 1.0)]))
        assert writer.offer(Item("mark_candles", "BTC-USDT-SWAP", M1, [price(T0 + M1.ms, 2.0)]))
        await writer.stop()
        await task
        return writer

    writer = asyncio.run(run())
    assert writer.stats.writes == 2 and writer.failure is None
    marks = store.read_price_candles("mark", "BTC-USDT-SWAP", M1)
    assert marks.column("close").to_pylist() == [2.0]
    assert store.last_candle_ts("BTC-USDT-SWAP", M1) == T0 + M1.ms


class SlowStore(Store):
    """A store whose candle writes wait for `go` (a write that outlasts the hold's bound)."""

    def __init__(self, path: Path, events: list[str]) -> None:
        super().__init__(path)
        self.events = events
        self.go = threading.Event()
        self.go.set()

    def write_candles_many(self, items):  # type: ignore[no-untyped-def]
        self.events.append("write")
        assert self.go.wait(10)
        written: int = super().write_candles_many(items)
        self.events.append("written")
        return written


def test_a_write_holds_the_websockets_at_most_its_bound_and_not_at_every_batch(
    tmp_path: Path,
) -> None:
    """While a batch is written the websockets are held (not read), released when it is
    written or once HOLD_MAX_S of the writer's clock has passed, whichever is first; a batch
    within HOLD_EVERY_S of the last hold is written without one."""
    events: list[str] = []
    store = SlowStore(tmp_path, events)

    def hold() -> Callable[[], None]:
        events.append("hold")
        return lambda: events.append("resume")

    async def run() -> None:
        clock = SteppedClock()
        writer = Writer(store, now=lambda: T0 + 2 * M1.ms, local=clock)
        writer.hold = hold
        task = asyncio.create_task(writer.run())

        async def batch(ts: int) -> None:
            writer.offer(Item("candles", "BTC-USDT", M1, [candle(ts, 1.0)]))
            await settle()
            await clock.advance(GATHER_QUIET_S)  # the gather sees a quiet step
            await clock.advance(GATHER_QUIET_S)

        async def until(what: str) -> None:
            for _ in range(500):
                if what in events:
                    return
                await asyncio.sleep(0.01)  # the write runs on the writer's thread
            raise AssertionError(f"no {what!r} in {events}")

        await batch(T0)  # a quick write: held, then resumed once written
        await until("resume")
        assert events == ["hold", "write", "written", "resume"]

        events.clear()
        await clock.advance(HOLD_EVERY_S)
        store.go.clear()  # a write that outlasts the bound
        await batch(T0 + M1.ms)
        await until("write")
        await clock.advance(HOLD_MAX_S)
        await until("resume")
        assert events == ["hold", "write", "resume"]  # resumed with the write still under way
        store.go.set()
        await until("written")

        events.clear()
        await batch(T0 + 2 * M1.ms)  # within HOLD_EVERY_S of the last hold: not held
        await until("written")
        await writer.stop()
        await task
        assert events == ["write", "written"]

    asyncio.run(run())
    assert len(list_journal(tmp_path, "candles")) == 3
