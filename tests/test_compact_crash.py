"""Compaction killed (SIGKILL) at any instant, then run again, equals an uninterrupted one.

The journal is built once: batches that rewrite earlier rows with other values, with the same
values from another source, and a value changed and changed back (the precedence rule's corner
cases). Compaction then runs in a real subprocess, killed at random instants and at kill points
inside the round (after a given number of partition writes, the last one being just before the
journal files are deleted); a final uninterrupted compaction must leave exactly the files an
uninterrupted run leaves, every one readable, and the journal empty.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

from crash_helpers import (
    assert_same_dataset,
    child_env,
    kill_at_random_instants,
    read_dataset,
    temp_files,
)
from okx_collector.errors import StorageError
from okx_collector.fsutil import fsync_dirs
from okx_collector.models import Candle, FundingRate
from okx_collector.store import Store
from okx_collector.store.arrow import BoolArray
from okx_collector.store.atomic import deferred_dir_syncs, read_parquet, write_atomic
from okx_collector.store.compact import Staged, compact_round, compaction_lock
from okx_collector.store.journal import KINDS
from okx_collector.store.reader import Series
from okx_collector.store.schema import candles_table
from okx_collector.timeframes import Timeframe

M1 = Timeframe.parse("1m")
H1 = Timeframe.parse("1h")
START = 1_788_220_800_000 - 90 * 60_000  # 22:30 UTC: batches cross midnight into a new day file
SERIES = [f"S{i:03d}-USDT" for i in range(60)]


def candle(ts: int, price: float, source: str = "ws") -> Candle:
    return Candle(ts, price, price + 1, price - 1, price, 1.0, price, source)  # type: ignore[arg-type]


def build_journal(root: Path) -> None:
    store = Store(root)
    for minute in range(0, 180, 6):  # 30 closes of 6 candles for every series, like a live job
        items = [
            (inst, M1, [candle(START + (minute + k) * M1.ms, 100.0 + k) for k in range(6)])
            for inst in SERIES
        ]
        store.write_candles_many(items)
    for inst in SERIES[:20]:  # a catch-up rewrites values, then the same values from REST
        store.write_candles(inst, M1, [candle(START + k * M1.ms, 200.0 + k) for k in range(30)])
        store.write_candles(
            inst, M1, [candle(START + k * M1.ms, 200.0 + k, "poll") for k in range(10)]
        )
    for inst in SERIES[20:25]:  # changed and changed back: the last write's source stands
        store.write_candles(inst, M1, [candle(START, 555.0)])
        store.write_candles(inst, M1, [candle(START, 100.0, "poll")])
    store.write_candles(
        "S000-USDT", H1, [candle(START + 30 * 60_000 + k * H1.ms, 7.0) for k in range(3)]
    )
    store.write_funding("S000-USDT-SWAP", [FundingRate(START, 1e-4, 1e-4, "backfill")])


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("journal") / "data"
    build_journal(root)
    return root


@pytest.fixture(scope="module")
def reference(journal: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reference") / "data"
    shutil.copytree(journal, root)
    Store(root).compact()
    return root


# The compaction as a writing command runs it, in its own process. Kill points, through the
# store's own seam for the partition writes: after `KILL_STAGED` staged merges (temp files
# written, not yet fsynced nor renamed, their series locked) or after `KILL_COMMITTED` renames.
SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading
    from pathlib import Path
    from okx_collector.store import Store
    from okx_collector.store.compact import compact_all

    root, kill_staged, kill_committed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[4])
    store = Store(root)
    store.recover()
    counts = {"staged": 0, "committed": 0}
    lock = threading.Lock()

    def count(what, limit):
        with lock:
            counts[what] += 1
            if counts[what] == limit:
                os.kill(os.getpid(), signal.SIGKILL)

    class Counted:
        def __init__(self, staged):
            self.staged = staged
            self.temp = staged.temp

        def commit(self):
            self.staged.commit()
            count("committed", kill_committed)

        def abort(self):
            self.staged.abort()

    def write(series, rows, whole):
        staged = Counted(store._io.stage_in(series, rows, whole))
        count("staged", kill_staged)
        return staged

    compact_all(root, store._series_for, write, max_files=int(sys.argv[3]))
    print("done")
    """
)


def run_compaction(
    root: Path, kill_after: int = 0, max_files: int = 40, kill_committed: int = 0
) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", SCRIPT, str(root), str(kill_after), str(max_files)]
    return subprocess.Popen(
        [*argv, str(kill_committed)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=child_env(),
    )  # fmt: skip


def finish(root: Path) -> None:
    """A writing command's start: recovery, then the whole journal compacted."""
    store = Store(root)
    store.recover()
    store.compact()
    assert store.journal_pending() == 0


def test_an_uninterrupted_compaction_empties_the_journal(journal: Path, reference: Path) -> None:
    assert Store(journal).journal_pending() > 0
    assert not list((reference / "journal").rglob("*.parquet"))
    # What the journal held is what the partitions hold now, seen through the store alike.
    before, after = Store(journal), Store(reference)
    for inst in SERIES:
        assert before.read_candles(inst, M1).equals(after.read_candles(inst, M1))
    assert after.read_candles("S021-USDT", M1).column("source")[0].as_py() == "poll"


def test_compacting_in_small_chunks_of_series_gives_the_same_dataset(
    journal: Path, reference: Path, tmp_path: Path
) -> None:
    """A round writes its series a chunk at a time (bounded memory), and fsyncs the folders of
    all of them at its end: the files are those of a round written at once."""
    root = tmp_path / "data"
    shutil.copytree(journal, root)
    store = Store(root)
    with compaction_lock(root):
        for kind in KINDS.values():
            while compact_round(
                root, kind, store._series_for, store._io.stage_in, chunk_series=7
            ).files:
                pass
    assert store.journal_pending() == 0
    assert_same_dataset(root, reference)
    assert not temp_files(root)


def test_a_deferred_write_leaves_its_folder_to_the_caller(tmp_path: Path) -> None:
    table = candles_table("S000-USDT", "1m", [candle(START, 1.0)])
    dirs: set[Path] = set()
    with deferred_dir_syncs(dirs):
        write_atomic(tmp_path / "a" / "x.parquet", table, deferrable=True)
        write_atomic(tmp_path / "b" / "x.parquet", table)  # (not deferrable: fsynced itself)
    write_atomic(tmp_path / "c" / "x.parquet", table, deferrable=True)  # (outside the block)
    assert dirs == {tmp_path / "a"}
    assert read_parquet(tmp_path / "a" / "x.parquet", table.schema).equals(table)
    fsync_dirs(dirs | {tmp_path / "b", tmp_path / "c"})  # (more than one: on the pool)


@pytest.mark.parametrize("kill_after", [1, 7, 60, 61])
def test_killed_after_n_staged_merges(
    journal: Path, reference: Path, tmp_path: Path, kill_after: int
) -> None:
    """A round's chunk (60 series here) is staged, its temp files not yet fsynced nor renamed:
    killed after 1, 7 or all 60 of them, or inside the second round (61)."""
    root = tmp_path / "data"
    shutil.copytree(journal, root)
    proc = run_compaction(root, kill_after)
    assert proc.wait(60) == -9
    read_dataset(root)  # every visible file readable
    finish(root)
    assert_same_dataset(root, reference)
    assert not temp_files(root)


@pytest.mark.parametrize("kill_committed", [1, 30, 60, 61])
def test_killed_after_n_renames(
    journal: Path, reference: Path, tmp_path: Path, kill_committed: int
) -> None:
    """The chunk's temp files fsynced, killed after some of their renames: 60, the first
    round has replaced every partition it touched and dies before its folders' fsyncs and
    its journal files' deletes; 61, inside the second round."""
    root = tmp_path / "data"
    shutil.copytree(journal, root)
    proc = run_compaction(root, kill_committed=kill_committed)
    assert proc.wait(60) == -9
    read_dataset(root)
    finish(root)
    assert_same_dataset(root, reference)
    assert not temp_files(root)


def test_killed_at_random_instants_then_restarted(
    journal: Path, reference: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    argv = [sys.executable, "-c", SCRIPT, str(root), "0", "10", "0"]
    kills = kill_at_random_instants(
        argv, root, journal, rounds=6, seed=13, earliest=0.3, check=read_dataset
    )
    assert kills >= 1
    finish(root)
    assert not temp_files(root)
    assert_same_dataset(root, reference)


def test_a_failed_merge_leaves_no_lock_held_nor_temp_file(
    journal: Path, reference: Path, tmp_path: Path
) -> None:
    """A merge that fails inside a chunk: the round raises and deletes no journal file; the
    chunk's other staged merges are undone (temp files removed, locks released), so that the
    next round, in the same process, finishes the job."""
    root = tmp_path / "data"
    shutil.copytree(journal, root)
    store = Store(root)
    staged: list[Path] = []

    def failing(series: Series, rows: pa.Table, whole: BoolArray) -> Staged:
        if series.directory.parent.name == "S031-USDT":
            raise StorageError("no space left on device")
        done = store._io.stage_in(series, rows, whole)
        if done.temp is not None:
            staged.append(done.temp)
        return done

    pending = store.journal_pending()
    with pytest.raises(StorageError), compaction_lock(root):
        compact_round(root, KINDS["candles"], store._series_for, failing, chunk_series=20)
    assert staged  # (merges of the failed chunk and the one after it were staged)
    assert not temp_files(root)
    assert store.journal_pending() == pending
    assert not any(lock.locked() for lock in store._io._locks.values())
    store.compact()
    assert_same_dataset(root, reference)
