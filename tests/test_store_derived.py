"""Mark and index candles and open interest in the store: the journal path, compaction into their
own public layout, reads of both, validation, recovery and listing like trade candles."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from okx_collector.models import OpenInterest, PriceCandle
from okx_collector.store import InvalidRecords, Store
from okx_collector.store.journal import list_journal
from okx_collector.store.schema import (
    INDEX_CANDLES,
    MARK_CANDLES,
    OPEN_INTEREST,
    OPEN_INTEREST_SCHEMA,
    PRICE_CANDLE_SCHEMA,
)
from okx_collector.timeframes import Timeframe

M1 = Timeframe.parse("1m")
H1 = Timeframe.parse("1h")
T0 = 1_764_547_200_000  # 2025-12-01T00:00Z
DAY = 86_400_000


def pc(ts: int, close: float, source: str = "backfill") -> PriceCandle:
    return PriceCandle(ts, close - 1, close + 2, close - 2, close, source)  # type: ignore[arg-type]


def oi(ts: int, contracts: float, source: str = "backfill") -> OpenInterest:
    return OpenInterest(ts, contracts, contracts / 100, contracts * 900, source)  # type: ignore[arg-type]


def test_mark_candles_go_through_the_journal_and_compact_into_their_layout(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rows = [pc(T0 + i * 60_000, 100.0 + i) for i in range(3)] + [pc(T0 + DAY, 200.0)]
    assert store.write_price_candles("mark", "BTC-USDT-SWAP", M1, rows) == 4
    assert len(list_journal(tmp_path, "mark_candles")) == 1
    before = store.read_price_candles("mark", "BTC-USDT-SWAP", M1)
    assert before.schema == PRICE_CANDLE_SCHEMA
    assert before.column("close").to_pylist() == [100.0, 101.0, 102.0, 200.0]
    store.compact()
    assert list_journal(tmp_path, "mark_candles") == []
    root = tmp_path / "mark_candles" / "BTC-USDT-SWAP" / "1m"
    assert sorted(p.name for p in root.glob("*.parquet")) == [
        "2025-12-01.parquet",
        "2025-12-02.parquet",
    ]
    on_disk = pq.read_table(root / "2025-12-01.parquet")
    assert on_disk.column("ts").to_pylist() == [T0, T0 + 60_000, T0 + 120_000]
    assert on_disk.column("inst_id").to_pylist() == ["BTC-USDT-SWAP"] * 3
    after = store.read_price_candles("mark", "BTC-USDT-SWAP", M1)
    assert after.equals(before)
    # Trade candles of the same id are not touched: a separate kind.
    assert store.read_candles("BTC-USDT-SWAP", M1).num_rows == 0


def test_index_candles_keyed_by_index_id_and_a_newer_write_wins(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_price_candles("index", "BTC-USDT", H1, [pc(T0, 10.0), pc(T0 + 3_600_000, 11.0)])
    store.compact()
    store.write_price_candles("index", "BTC-USDT", H1, [pc(T0 + 3_600_000, 12.0, "ws")])
    read = store.read_price_candles("index", "BTC-USDT", H1)  # partition + journal
    assert read.column("close").to_pylist() == [10.0, 12.0]
    assert read.column("source").to_pylist() == ["backfill", "ws"]
    store.compact()
    assert store.read_price_candles("index", "BTC-USDT", H1).equals(read)
    # Keyed by the index id; the newest month is kept in day files (docs/storage.md).
    day = datetime.fromtimestamp(T0 / 1000, UTC).strftime("%Y-%m-%d")
    assert (tmp_path / "index_candles" / "BTC-USDT" / "1h" / f"{day}.parquet").is_file()
    # The mark kind of the same id holds nothing.
    assert store.read_price_candles("mark", "BTC-USDT", H1).num_rows == 0


def test_open_interest_rows_at_bar_closes(tmp_path: Path) -> None:
    store = Store(tmp_path)
    rows = [oi(T0 + i * 60_000, 1000.0 + i) for i in range(5)]
    store.write_open_interest("ETH-USDT-SWAP", M1, rows)
    table = store.read_open_interest("ETH-USDT-SWAP", M1, T0 + 60_000, T0 + 180_000)
    assert table.schema == OPEN_INTEREST_SCHEMA
    assert table.column("ts").to_pylist() == [T0 + 60_000, T0 + 120_000]
    assert table.column("oi_contracts").to_pylist() == [1001.0, 1002.0]
    assert table.column("oi_coin").to_pylist() == [10.01, 10.02]
    store.compact()
    assert store.kind_edge(OPEN_INTEREST, "ETH-USDT-SWAP", M1, newest=True) == T0 + 240_000
    assert store.kind_edge(OPEN_INTEREST, "ETH-USDT-SWAP", M1, newest=False) == T0
    stamps = store.kind_timestamps(OPEN_INTEREST, "ETH-USDT-SWAP", M1)
    assert stamps.tolist() == [T0 + i * 60_000 for i in range(5)]


@pytest.mark.parametrize(
    ("write", "problem"),
    [
        (lambda s: s.write_price_candles("mark", "A-B-SWAP", M1, [pc(T0 + 1, 5.0)]), "aligned"),
        (
            lambda s: s.write_price_candles(
                "index", "A-B", M1, [PriceCandle(T0, 5.0, 4.0, 3.0, 5.0, "ws")]
            ),
            "high is below",
        ),
        (lambda s: s.write_open_interest("A-B-SWAP", M1, [oi(T0, -1.0)]), "negative"),
        (lambda s: s.write_open_interest("A-B-SWAP", M1, [oi(T0 + 5, 1.0)]), "bar close"),
        (lambda s: s.write_open_interest("A-B-SWAP", M1, [oi(T0, float("nan"))]), "finite"),
    ],
)
def test_bad_batches_write_nothing(tmp_path: Path, write: object, problem: str) -> None:
    store = Store(tmp_path)
    with pytest.raises(InvalidRecords, match=problem):
        write(store)  # type: ignore[operator]
    assert store.journal_pending() == 0


def test_a_many_series_batch_is_one_file_and_a_bad_series_is_named(tmp_path: Path) -> None:
    """A live close writes every series in one table checked once; a bad row in one series of
    the batch still names that series and writes nothing of the batch."""
    store = Store(tmp_path)
    ids = [f"C{i}-USDT-SWAP" for i in range(50)]
    good = [(sid, M1, [pc(T0, 5.0 + i)]) for i, sid in enumerate(ids)]
    bad = [*good[:30], ("BAD-USDT-SWAP", M1, [pc(T0 + 1, 5.0)]), *good[30:]]
    with pytest.raises(InvalidRecords, match="BAD-USDT-SWAP"):
        store.write_price_candles_many("mark", bad)
    assert store.journal_pending() == 0
    mixed = [*good, ("D-USDT-SWAP", Timeframe.parse("5m"), [pc(T0, 1.0)])]  # two timeframes
    assert store.write_price_candles_many("mark", [*mixed, ("E-USDT-SWAP", M1, [])]) == 51
    assert store.journal_pending() == 1
    for i, sid in enumerate(ids):
        table = store.read_price_candles("mark", sid, M1)
        assert table.column("close").to_pylist() == [5.0 + i]
    assert store.read_price_candles("mark", "D-USDT-SWAP", Timeframe.parse("5m")).num_rows == 1
    rows = [(sid, M1, [oi(T0, float(i))]) for i, sid in enumerate(ids)]
    assert store.write_open_interest_many(rows) == 50
    assert store.read_open_interest(ids[7], M1).column("oi_contracts").to_pylist() == [7.0]


def test_bad_ids_never_become_paths(tmp_path: Path) -> None:
    store = Store(tmp_path)
    with pytest.raises(ValueError, match="invalid OKX instrument id"):
        store.write_price_candles("index", "../x", M1, [pc(T0, 5.0)])


def test_listing_recovery_and_dataset_files_cover_the_new_kinds(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.write_price_candles_many(
        "mark", [("BTC-USDT-SWAP", M1, [pc(T0, 1.0)]), ("ETH-USDT-SWAP", H1, [pc(T0, 2.0)])]
    )
    store.write_price_candles("index", "BTC-USDT", M1, [pc(T0, 1.0)])
    assert store.list_kind_series(MARK_CANDLES) == [
        ("BTC-USDT-SWAP", "1m"),
        ("ETH-USDT-SWAP", "1h"),
    ]
    store.write_open_interest("BTC-USDT-SWAP", M1, [oi(T0, 3.0)])
    store.compact()
    assert store.list_kind_series(MARK_CANDLES) == [
        ("BTC-USDT-SWAP", "1m"),
        ("ETH-USDT-SWAP", "1h"),
    ]
    assert store.list_kind_series(INDEX_CANDLES) == [("BTC-USDT", "1m")]
    assert store.list_kind_series(OPEN_INTEREST) == [("BTC-USDT-SWAP", "1m")]
    names = [p.relative_to(tmp_path).as_posix() for p in store.dataset_files()]
    assert "index_candles/BTC-USDT/1m/2025-12-01.parquet" in names
    assert "open_interest/BTC-USDT-SWAP/1m/2025-12-01.parquet" in names
    assert len(names) == 4
    # A torn partition is moved aside at start-up; a torn journal file too.
    torn = tmp_path / "open_interest" / "BTC-USDT-SWAP" / "1m" / "2025-12-01.parquet"
    torn.write_bytes(b"PAR1 torn")
    store.write_price_candles("index", "BTC-USDT", M1, [pc(T0 + 60_000, 1.0)])
    journal = list_journal(tmp_path, "index_candles")[0]
    journal.write_bytes(journal.read_bytes()[:20])
    notes = Store(tmp_path).recover()
    assert {(n.path, n.action) for n in notes} >= {(torn, "moved_aside"), (journal, "moved_aside")}
    fresh = Store(tmp_path)
    assert fresh.read_open_interest("BTC-USDT-SWAP", M1).num_rows == 0
    assert fresh.read_price_candles("index", "BTC-USDT", M1).column("ts").to_pylist() == [T0]
