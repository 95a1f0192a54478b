"""An incremental export costs the new bars: it reads the newest month from the day of its last
exported candle on, and resumes the files' checksums; and stays exact when that shortcut is not
allowed (an earlier day changed, the saved state is gone or damaged, a file was touched)."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from okx_collector.qlib_export import export_qlib
from okx_collector.qlib_export.arrays import CANDLE_FIELDS, Candles, MonthAcc, summarize
from okx_collector.qlib_export.digest import RESUMABLE, Sha256
from okx_collector.qlib_export.files import checkpoint, hash_file
from okx_collector.qlib_export.sources import SOURCES_FILE
from okx_collector.store.store import Store
from okx_collector.timeframes import DAY_MS, Timeframe
from tests.test_qlib_export import grid, make, tree

M1 = Timeframe.parse("1m")
M15 = Timeframe.parse("15m")
MAY = 1_746_057_600_000  # 2025-05-01 00:00 UTC


class CountingStore(Store):
    """A store that records the ranges the exporter reads."""

    reads: list[tuple[int | None, int | None]]

    def read_candles(self, inst_id, tf, start=None, end=None, *, columns=None):  # type: ignore[no-untyped-def]
        self.reads.append((start, end))
        return super().read_candles(inst_id, tf, start, end, columns=columns)


def _age(root: Path) -> None:
    """Make the store files written in the last minute look written an hour ago (the racy-file
    rule ignores fresh ones); older ones keep their identity, as a collector leaves them."""
    now = time.time()
    for p in root.rglob("*.parquet"):
        if p.stat().st_mtime > now - 60:
            os.utime(p, (now - 3600, now - 3600))


def _fresh(store: Store, out: Path, tf: Timeframe) -> dict[str, bytes]:
    export_qlib(store, out, tf)
    return tree(out)


def _store(root: Path, tf: Timeframe, days: int) -> tuple[Store, np.ndarray]:
    """Two series over `days` days of May 2025 with gaps, compacted into partitions (the newest
    month in day files) and aged, as a collector leaves them."""
    store = Store(root)
    ts = grid(tf, MAY, days * DAY_MS // tf.ms, drop=0.02, seed=1)
    store.write_candles("BTC-USDT", tf, make(ts, 1))
    store.write_candles("ETH-USDT", tf, make(grid(tf, MAY + 5 * tf.ms, 900, 0.1, 2), 2))
    store.compact()
    _age(root)
    return store, ts


@pytest.mark.parametrize("tf", [M1, M15], ids=["1m", "15m"])
def test_an_append_reads_from_the_day_of_the_last_bar(tmp_path: Path, tf: Timeframe) -> None:
    root = tmp_path / "data"
    store, _ = _store(root, tf, 20)
    out = tmp_path / "qlib"
    export_qlib(store, out, tf)
    counting = CountingStore(root)
    for k, n in enumerate((7, DAY_MS // tf.ms + 3, 2)):  # same day, into the next days, more
        last = int(store.read_candles("BTC-USDT", tf, columns=["ts"]).column("ts")[-1].as_py())
        store.write_candles("BTC-USDT", tf, make(grid(tf, last + 2 * tf.ms, n), 10 + k))
        store.compact()
        _age(root)
        counting.reads = []
        r = export_qlib(counting, out, tf)
        assert r.appended == ("BTC-USDT",) and r.unchanged == ("ETH-USDT",)
        assert r.slots_written == n + 1  # the missing bar before the new ones, then the new ones
        # Each instrument read once, from the UTC day of its last exported bar (ETH: its last day).
        starts = sorted(lo for lo, _ in counting.reads if lo is not None)
        assert len(counting.reads) == 2 and starts[-1] == last - last % DAY_MS
        assert tree(out) == _fresh(store, tmp_path / f"fresh-{k}", tf)


def test_a_revised_earlier_day_of_the_month_is_read_and_rewritten(tmp_path: Path) -> None:
    root = tmp_path / "data"
    store, ts = _store(root, M15, 20)
    out = tmp_path / "qlib"
    export_qlib(store, out, M15)
    store.write_candles("BTC-USDT", M15, make(ts[100:103], 7))  # day 2 of the month, revised
    store.write_candles("BTC-USDT", M15, make(grid(M15, int(ts[-1]) + M15.ms, 5), 8))
    store.compact()
    counting = CountingStore(root)
    counting.reads = []
    r = export_qlib(counting, out, M15)
    assert any(lo is not None and lo <= MAY for lo, _ in counting.reads)  # the whole month
    assert r.slots_written == len(grid(M15, MAY, 20 * 96)) + 5  # rewritten from the month's start
    assert tree(out) == _fresh(store, tmp_path / "fresh", M15)


@pytest.mark.parametrize("damage", ["deleted", "garbage", "wrong state", "file touched"])
def test_a_lost_or_wrong_saved_state_costs_time_not_correctness(
    tmp_path: Path, damage: str
) -> None:
    root = tmp_path / "data"
    store, ts = _store(root, M1, 10)
    out = tmp_path / "qlib"
    export_qlib(store, out, M1)
    cache = out / SOURCES_FILE
    doc = json.loads(cache.read_text())
    section = doc["timeframes"]["1m"]
    if damage == "deleted":
        cache.unlink()
    elif damage == "garbage":
        cache.write_text("{not json")
    elif damage == "wrong state":
        # States that do not match the data: resuming from them would give wrong checksums, so
        # they are checked against the manifest's before use (a month's) or only trusted for the
        # very file they were saved for (a feature file's, which this one is not: a new inode).
        for entry in section["prefixes"].values():
            entry[2]["states"] = [Sha256().state()] * 7
        cache.write_text(json.dumps(doc))
    else:  # a feature file changed behind the exporter's back (same size): its checksum is redone
        path = out / "features/btc-usdt/close.1min.bin"
        data = bytearray(path.read_bytes())
        data[8:12] = np.array([1.5], dtype="<f4").tobytes()
        path.write_bytes(bytes(data))
    store.write_candles("BTC-USDT", M1, make(grid(M1, int(ts[-1]) + M1.ms, 30), 9))
    store.compact()
    r = export_qlib(store, out, M1)
    manifest = json.loads((out / "manifest.json").read_text())
    for rel, entry in manifest["timeframes"]["1m"]["instruments"]["BTC-USDT"]["files"].items():
        assert entry["sha256"] == hashlib.sha256((out / rel).read_bytes()).hexdigest()
    if damage != "file touched":
        assert r.appended == ("BTC-USDT",)
        assert tree(out) == _fresh(store, tmp_path / "fresh", M1)


# -- the pieces --------------------------------------------------------------------------------


def test_sha256_resumes_from_a_saved_state() -> None:
    data = np.random.default_rng(1).bytes(100_000)
    for cut in (0, 1, 63, 64, 65, 4097, 99_999, 100_000):
        h = Sha256()
        h.update(data[:cut])
        state = h.state()
        if not RESUMABLE:
            assert state is None
            continue
        assert state is not None
        again = Sha256.resume(state)
        again.update(memoryview(data)[cut:])
        assert again.hexdigest() == hashlib.sha256(data).hexdigest()
        assert h.hexdigest() == hashlib.sha256(data[:cut]).hexdigest()  # (h goes on unchanged)
    with pytest.raises(ValueError):
        Sha256.resume("00ff")


@pytest.mark.skipif(not RESUMABLE, reason="no OpenSSL SHA-256 context functions")
def test_a_month_summary_resumes_at_any_cut() -> None:
    ts = grid(M15, MAY, 2976, drop=0.1, seed=3)
    rng = np.random.default_rng(4)
    candles = Candles(ts, {f: rng.random(ts.size) for f in CANDLE_FIELDS})
    whole = summarize(candles, M15.ms)
    for cut in (0, 1, 500, int(ts.size) - 1, int(ts.size)):
        acc = MonthAcc(M15.ms).add(
            Candles(ts[:cut], {f: c[:cut] for f, c in candles.columns.items()})
        )
        saved = acc.save()
        assert saved is not None
        resumed = MonthAcc(M15.ms, json.loads(json.dumps(saved)))
        resumed.add(Candles(ts[cut:], {f: c[cut:] for f, c in candles.columns.items()}))
        assert resumed.summary() == whole


def test_a_file_checksum_resumes_from_its_point(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    data = np.random.default_rng(5).bytes(300_000)
    path.write_bytes(data)
    entry, point = hash_file(path, None)
    assert entry.sha256 == hashlib.sha256(data).hexdigest() and entry.bytes == len(data)
    if not RESUMABLE:
        assert point is None
        return
    assert point is not None and point.offset == checkpoint(len(data))
    more = np.random.default_rng(6).bytes(5_000)
    with path.open("r+b") as fh:  # the last bytes rewritten, then an append
        fh.seek(point.offset + 10)
        fh.write(more)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    entry2, point2 = hash_file(path, point)
    assert entry2.sha256 == expected and point2 is not None
