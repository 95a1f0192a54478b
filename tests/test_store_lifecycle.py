"""DATA_DIR/delisted.json: concurrent notices all land, relisting forgets, damage loses labels."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from okx_collector.store.lifecycle import (
    FILE_NAME,
    forget_delisted,
    read_delisted,
    record_delisted,
)


def test_concurrent_notices_are_all_recorded(tmp_path: Path) -> None:
    ids = [f"SIM{i:04d}-USDT" for i in range(16)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: record_delisted(tmp_path, i, 1_000), ids))
    assert read_delisted(tmp_path) == dict.fromkeys(ids, 1_000)
    assert not [p for p in tmp_path.iterdir() if p.name != FILE_NAME]  # no temp file left


def test_first_notice_is_kept_and_relisting_forgets(tmp_path: Path) -> None:
    assert record_delisted(tmp_path, "DOT-USDT", 5) and not record_delisted(tmp_path, "DOT-USDT", 9)
    assert read_delisted(tmp_path) == {"DOT-USDT": 5}
    assert forget_delisted(tmp_path, "DOT-USDT") and not forget_delisted(tmp_path, "DOT-USDT")
    assert read_delisted(tmp_path) == {}
    (tmp_path / FILE_NAME).write_text("{not json")
    assert read_delisted(tmp_path) == {}
    assert record_delisted(tmp_path, "ADA-USDT", 7)
    assert read_delisted(tmp_path) == {"ADA-USDT": 7}
