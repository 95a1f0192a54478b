"""The journal: immutable batch files, names in write order, rows per series (last row wins)."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from crash_helpers import wait_until
from okx_collector.models import Candle, FundingObservation, OpenInterest
from okx_collector.store import Store
from okx_collector.store.compact import BackgroundCompactor
from okx_collector.store.journal import (
    JournalReader,
    JournalWriter,
    list_journal,
    split_series,
)
from okx_collector.store.merge import dedupe_runs
from okx_collector.store.schema import CANDLES, OPEN_INTEREST, candles_tables, funding_live_table
from okx_collector.timeframes import Timeframe

NAME = re.compile(r"^\d{13}-\d{7}-\d{3}-\d{12}\.parquet$")


def batch(rows: list[tuple[str, str, int, float]]) -> pa.Table:
    items = [(i, tf, [Candle(ts, p, p, p, p, 1.0, p, "ws")]) for i, tf, ts, p in rows]
    return pa.concat_tables(candles_tables(items)).combine_chunks()


def test_append_writes_one_immutable_file_per_batch_in_write_order(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    first = writer.append("candles", batch([("BTC-USDT", "1m", 60_000, 1.0)]))
    second = writer.append("candles", batch([("ETH-USDT", "1m", 60_000, 2.0)]))
    assert [p.name for p in list_journal(tmp_path, "candles")] == [first.name, second.name]
    assert NAME.fullmatch(first.name) and first.parent == tmp_path / "journal" / "candles"
    assert pq.read_table(first).column("inst_id").to_pylist() == ["BTC-USDT"]
    # No temp file is left beside them.
    assert sorted(p.name for p in first.parent.iterdir()) == [first.name, second.name]


def test_two_writers_never_collide_and_a_later_one_sorts_after(tmp_path: Path) -> None:
    a, b = JournalWriter(tmp_path), JournalWriter(tmp_path)
    assert a.writer_id != b.writer_id
    first = a.append("funding_live", _funding_live())
    later = b.append("funding_live", _funding_live())
    assert list_journal(tmp_path, "funding_live") == [first, later]


def _funding_live() -> pa.Table:
    return funding_live_table("BTC-USDT-SWAP", [FundingObservation(1, 2, 0.1, None, None, "ws")])


def test_concurrent_appends_get_distinct_names(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    paths: list[Path] = []
    lock = threading.Lock()

    def work(k: int) -> None:
        for j in range(20):
            p = writer.append("candles", batch([("BTC-USDT", "1m", (k * 100 + j) * 60_000, 1.0)]))
            with lock:
                paths.append(p)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 80 == len(list_journal(tmp_path, "candles"))


def test_split_series_keeps_the_last_row_of_a_key_within_a_batch() -> None:
    table = batch(
        [
            ("BTC-USDT", "1m", 120_000, 1.0),
            ("ETH-USDT", "1m", 60_000, 5.0),
            ("BTC-USDT", "1m", 60_000, 2.0),
            ("BTC-USDT", "1m", 120_000, 3.0),  # the same key again: this one wins
            ("BTC-USDT", "5m", 0, 4.0),
        ]
    )
    out = split_series(table, CANDLES)
    assert set(out) == {("BTC-USDT", "1m"), ("ETH-USDT", "1m"), ("BTC-USDT", "5m")}
    btc = out[("BTC-USDT", "1m")]
    assert btc.column("ts").to_pylist() == [60_000, 120_000]
    assert btc.column("close").to_pylist() == [2.0, 3.0]


def test_reader_unions_files_with_the_newer_file_winning(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    writer.append("candles", batch([("BTC-USDT", "1m", 60_000, 1.0), ("BTC-USDT", "1m", 0, 9.0)]))
    writer.append("candles", batch([("BTC-USDT", "1m", 60_000, 2.0)]))
    reader = JournalReader(tmp_path)
    files = reader.files("candles")
    parts = reader.series_rows(CANDLES, ("BTC-USDT", "1m"), files, None, None)
    rows = dedupe_runs(pa.concat_tables(parts), CANDLES)
    assert rows.column("ts").to_pylist() == [0, 60_000]
    assert rows.column("close").to_pylist() == [9.0, 2.0]
    ranged = reader.series_rows(CANDLES, ("BTC-USDT", "1m"), files, 60_000, None)
    assert [t.column("ts").to_pylist() for t in ranged] == [[60_000], [60_000]]
    assert reader.series_rows(CANDLES, ("ETH-USDT", "1m"), files, None, None) == []
    assert reader.series_keys(CANDLES, files) == {("BTC-USDT", "1m")}


def test_an_unreadable_journal_file_is_skipped_and_reported_not_moved(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path)
    good = writer.append("candles", batch([("BTC-USDT", "1m", 0, 1.0)]))
    bad = writer.append("candles", batch([("BTC-USDT", "1m", 60_000, 1.0)]))
    bad.write_bytes(bad.read_bytes()[:40])
    reader = JournalReader(tmp_path)
    problems: list[tuple[Path, str]] = []
    rows = reader.series_rows(
        CANDLES, ("BTC-USDT", "1m"), reader.files("candles"), None, None, problems
    )
    assert [t.column("ts").to_pylist() for t in rows] == [[0]]
    assert [p for p, _ in problems] == [bad]
    assert bad.exists() and good.exists()


def test_journal_spans_name_a_series_files_with_their_key_ranges(tmp_path: Path) -> None:
    """`Store.journal_spans`: the journal files holding rows of one series (candles or a
    derived kind), oldest first, with the range of those rows; none once compacted."""
    store, tf = Store(tmp_path), Timeframe.parse("1m")

    def bars(*minutes: int) -> list[Candle]:
        return [Candle(m * 60_000, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, "ws") for m in minutes]

    store.write_candles("BTC-USDT", tf, bars(3, 1, 2))
    store.write_candles("ETH-USDT", tf, bars(0))
    store.write_candles("BTC-USDT", tf, bars(7))
    store.write_open_interest("BTC-USDT-SWAP", tf, [OpenInterest(120_000, 5.0, 0.05, 5e3, "ws")])
    files = list_journal(tmp_path, "candles")
    spans = store.journal_spans(CANDLES, "BTC-USDT", tf)
    assert [(s.path, s.first, s.last) for s in spans] == [
        (files[0], 60_000, 180_000),
        (files[2], 420_000, 420_000),
    ]
    assert [s.overlaps(200_000, 420_000) for s in spans] == [False, False]
    assert [s.overlaps(180_000, None) for s in spans] == [True, True]
    assert [p.name for p in store.candle_partition_files("BTC-USDT", tf, 0, 240_000)] == [
        files[0].name
    ]
    oi = store.journal_spans(OPEN_INTEREST, "BTC-USDT-SWAP", tf)
    assert [(s.first, s.last) for s in oi] == [(120_000, 120_000)]
    assert store.journal_spans(OPEN_INTEREST, "BTC-USDT-SWAP", Timeframe.parse("5m")) == []
    files[2].write_bytes(files[2].read_bytes()[:40])  # unreadable: left out, not moved
    fresh = Store(tmp_path)  # (a reader that has not decoded it before)
    assert [s.path for s in fresh.journal_spans(CANDLES, "BTC-USDT", tf)] == [files[0]]
    assert files[2].exists()
    files[2].unlink()
    store.compact()
    assert store.journal_spans(CANDLES, "BTC-USDT", tf) == []
    assert store.journal_spans(OPEN_INTEREST, "BTC-USDT-SWAP", tf) == []


def test_a_read_decodes_only_the_files_holding_its_series(tmp_path: Path) -> None:
    """The reader indexes each journal file once (the series it holds, their key ranges): a
    read of one series decodes only the files holding it in the range asked for, even when no
    decoded rows are kept; listings, spans and edges decode nothing more; files a compaction
    removed leave the index."""
    writer = JournalWriter(tmp_path)
    keys = [(f"S{n}-USDT", "1m") for n in range(5)]
    for i in range(20):  # file i: series i % 5, minute i (each series in 4 files)
        writer.append("candles", batch([(keys[i % 5][0], "1m", i * 60_000, float(i))]))
    reader = JournalReader(tmp_path, cache_bytes=0)  # nothing decoded is kept
    files = reader.files("candles")
    assert reader.series_keys(CANDLES, files) == set(keys)
    assert reader.decoded == 20  # each file once
    for n, key in enumerate(keys):
        rows = reader.series_rows(CANDLES, key, files, None, None)
        closes = [t.column("close").to_pylist() for t in rows]
        assert closes == [[float(n + 5 * j)] for j in range(4)]
    assert reader.decoded == 20 + 5 * 4  # each read: its own 4 files, not all 20
    ranged = reader.series_rows(CANDLES, keys[0], files, 5 * 60_000, 11 * 60_000)
    assert [t.column("ts").to_pylist() for t in ranged] == [[5 * 60_000], [10 * 60_000]]
    assert reader.decoded == 40 + 2  # the files holding the range
    spans = reader.spans(CANDLES, keys[1], reader.files("candles"))
    assert [(s.path, s.first, s.last) for s in spans] == [
        (files[i], i * 60_000, i * 60_000) for i in (1, 6, 11, 16)
    ]
    assert reader.series_keys(CANDLES, reader.files("candles")) == set(keys)
    assert reader.decoded == 42
    for path in files[:10]:  # as a compaction deletes the files it merged
        path.unlink()
    left = reader.files("candles")
    assert [s.path for s in reader.spans(CANDLES, keys[1], left)] == [files[11], files[16]]
    assert reader.decoded == 42
    cached = JournalReader(tmp_path)  # the default cache holds these small files
    for key in keys:
        cached.series_rows(CANDLES, key, cached.files("candles"), None, None)
    assert cached.decoded == 10


def test_the_background_compactor_merges_once_enough_files_wait(tmp_path: Path) -> None:

    store = Store(tmp_path)
    m1 = Timeframe.parse("1m")
    compactor = BackgroundCompactor(store.compact, store.journal_pending, min_files=3, check_s=0.01)
    compactor.start()
    try:
        for k in range(2):
            store.write_candles("BTC-USDT", m1, [Candle(k * 60_000, 1, 1, 1, 1, 1, 1, "ws")])
        assert compactor.rounds == 0  # below the threshold: nothing merged yet
        assert store.journal_pending() == 2
        store.write_candles("BTC-USDT", m1, [Candle(120_000, 1, 1, 1, 1, 1, 1, "ws")])
        wait_until(lambda: store.journal_pending() == 0, 10, "a background round")
    finally:
        compactor.stop()
    assert compactor.rounds >= 1 and compactor.failure is None
    assert (
        tmp_path / "candles" / "BTC-USDT" / "1m" / "1970-01-01.parquet"
    ).exists()  # (newest: days)
    assert store.candle_timestamps("BTC-USDT", m1).tolist() == [0, 60_000, 120_000]
