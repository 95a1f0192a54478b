"""The collector's allocator settings (memory.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest

from okx_collector.memory import give_back, tune_for_long_run


@pytest.fixture
def restored_pool() -> Iterator[None]:
    before = pa.default_memory_pool()
    yield
    pa.set_memory_pool(before)


def test_arrow_buffers_come_from_the_system_allocator(restored_pool: None) -> None:
    tune_for_long_run()
    assert pa.default_memory_pool().backend_name == "system"
    table = pa.table({"ts": pa.array(range(100_000), pa.int64())})
    assert pa.total_allocated_bytes() >= table.nbytes
    assert table.column("ts")[99_999].as_py() == 99_999


def test_give_back_keeps_live_buffers(restored_pool: None) -> None:
    tune_for_long_run()
    kept = pa.array(range(50_000), pa.int64())
    freed = pa.array(range(500_000), pa.int64())
    del freed
    give_back()
    assert kept.sum().as_py() == sum(range(50_000))
