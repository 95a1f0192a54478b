"""The partition cache's eviction: scan-resistant for a live job's cyclic writes, bounded always."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from okx_collector.store.cache import IDLE_S, TableCache, freeze


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def table(rows: int) -> pa.Table:
    return pa.table({"ts": pa.array(np.arange(rows, dtype=np.int64))})


def size(rows: int) -> int:
    return len(freeze(table(rows)))  # an entry's size: its frozen bytes


SIG = (1, 2, 3)


def cycle(cache: TableCache, names: list[str], rows: int) -> int:
    """One live close: each series looks its partition up, then stores the rewritten one."""
    hits = 0
    for name in names:
        series, path = Path(name), Path(name) / "p.parquet"
        hits += cache.get(series, path, SIG) is not None
        cache.put(series, path, SIG, table(rows))
    return hits


def test_cyclic_writes_beyond_capacity_still_hit_a_stable_subset() -> None:
    # Room for 3 of 5 series: plain LRU would evict each entry just before its next use.
    cache = TableCache(max_entries=3, max_bytes=10**9, clock=Clock())
    names = [f"s{i}" for i in range(5)]
    cycle(cache, names, 4)
    assert [cycle(cache, names, 4) for _ in range(5)] == [3] * 5
    assert len(cache) == 3


def test_an_entry_that_outgrows_the_room_is_dropped_not_its_neighbours() -> None:
    cache = TableCache(max_entries=10, max_bytes=3 * size(100), clock=Clock())
    for name in ("a", "b", "c"):
        cache.put(Path(name), Path(name) / "p", SIG, table(100))
    cache.put(Path("c"), Path("c") / "p", SIG, table(400))  # its file grew past the room left
    assert cache.get(Path("a"), Path("a") / "p", SIG) is not None
    assert cache.get(Path("b"), Path("b") / "p", SIG) is not None
    assert cache.get(Path("c"), Path("c") / "p", SIG) is None
    assert cache.nbytes == 2 * size(100)


def test_a_newcomer_displaces_only_idle_entries() -> None:
    clock = Clock()
    cache = TableCache(max_entries=2, max_bytes=10**9, clock=clock)
    cache.put(Path("a"), Path("a/p"), SIG, table(1))
    cache.put(Path("b"), Path("b/p"), SIG, table(1))
    cache.put(Path("c"), Path("c/p"), SIG, table(1))  # both others are in use
    assert cache.get(Path("c"), Path("c/p"), SIG) is None
    clock.now += IDLE_S / 2
    assert cache.get(Path("b"), Path("b/p"), SIG) is not None  # b is used, a is not
    clock.now += IDLE_S / 2 + 1
    cache.put(Path("c"), Path("c/p"), SIG, table(1))
    assert cache.get(Path("a"), Path("a/p"), SIG) is None
    assert cache.get(Path("b"), Path("b/p"), SIG) is not None
    assert cache.get(Path("c"), Path("c/p"), SIG) is not None


def test_an_entry_is_used_only_for_the_file_identity_it_was_stored_with() -> None:
    cache = TableCache(max_entries=4, max_bytes=10**9, clock=Clock())
    cache.put(Path("a"), Path("a/p1"), SIG, table(3))
    assert cache.get(Path("a"), Path("a/p1"), (1, 2, 4)) is None  # the file changed
    assert cache.get(Path("a"), Path("a/p2"), SIG) is None  # another partition
    assert cache.get(Path("a"), Path("a/p1"), None) is None  # the file is gone
    assert cache.get(Path("a"), Path("a/p1"), SIG) is not None


def test_an_entry_comes_back_equal_to_what_was_put() -> None:
    cache = TableCache(10, 2**20)
    original = pa.table({"ts": pa.array([1, 2, 3], pa.int64()), "s": pa.array(["a", None, "c"])})
    cache.put(Path("a"), Path("a/p"), SIG, original)
    got = cache.get(Path("a"), Path("a/p"), SIG)
    assert got is not None and got.equals(original) and got.schema.equals(original.schema)
    assert cache.get(Path("a"), Path("a/p"), (9, 9, 9)) is None  # the file changed since
