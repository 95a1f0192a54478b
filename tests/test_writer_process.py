"""The writer process: the store's writes in a child interpreter, errors back to the caller, and
no child left behind. Each scenario runs in a fresh interpreter of its own, as collect does: the
child dies with the thread that started it, which must not be one of pytest's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from okx_collector.store import Store
from okx_collector.timeframes import Timeframe

SCENARIO = """
import json, os, sys
from pathlib import Path
from okx_collector.errors import CollectorError, StorageError
from okx_collector.live.writer_process import WriterProcess
from okx_collector.models import Candle
from okx_collector.timeframes import Timeframe

data = Path(sys.argv[1])
m1 = Timeframe.parse("1m")
start = 1_763_683_200_000  # 2025-11-21 00:00 UTC
def candle(i, close=100.5):
    return Candle(start + i * m1.ms, 100.0 + i, 101.0 + i, 99.0, close, 1.5 * i, 150.0, "ws")

writes = WriterProcess(data, cache_mb=1)
out = {"child": writes.pid}
out["written"] = writes.write_candles_many(
    [("BTC-USDT", m1, [candle(i) for i in range(5)]), ("ETH-USDT", m1, [candle(0)])]
)
writes.prime_candles("BTC-USDT", m1)
out["again"] = writes.write_candles_many([("BTC-USDT", m1, [candle(4, close=100.25), candle(5)])])
try:  # a bad batch: InvalidRecords cannot cross the pipe as itself, its message must
    writes.write_candles_many([("BTC-USDT", m1, [candle(6)._replace(high=1.0)])])
except CollectorError as exc:
    out["invalid"] = [type(exc).__name__, str(exc), exc.exit_code]
out["notes"] = writes.take_notes()
if sys.argv[2] == "kill-child":
    os.kill(writes.pid, 9)
    try:
        writes.write_candles_many([("BTC-USDT", m1, [candle(7)])])
    except StorageError as exc:
        out["after_kill"] = str(exc)
else:
    writes.close()
    out["exitcode"] = writes.returncode
print(json.dumps(out, default=str), flush=True)
"""

ORPHAN = """
import sys, time
from pathlib import Path
from okx_collector.live.writer_process import WriterProcess
writes = WriterProcess(Path(sys.argv[1]), cache_mb=0)
print(writes.pid, flush=True)
time.sleep(60)
"""


def run(code: str, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_writes_through_the_child_are_the_store_writes(tmp_path: Path) -> None:
    out = run(SCENARIO, str(tmp_path), "close")
    assert out["written"] == 6
    assert out["again"] == 2  # one changed row, one new
    store = Store(tmp_path)
    table = store.read_candles("BTC-USDT", Timeframe.parse("1m"))
    assert table.column("close").to_pylist() == [100.5, 100.5, 100.5, 100.5, 100.25, 100.5]
    assert table.column("source").to_pylist() == ["ws"] * 6
    assert store.read_candles("ETH-USDT", Timeframe.parse("1m")).num_rows == 1
    name, message, exit_code = out["invalid"]  # type: ignore[misc]
    assert name == "CollectorError" and "refusing to write candles BTC-USDT 1m" in message
    assert "InvalidRecords in the writer process" in message and exit_code == 1
    assert out["notes"] == []
    assert out["exitcode"] == 0  # closing its pipes ends the child cleanly


def test_a_dead_child_is_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    out = run(SCENARIO, str(tmp_path), "kill-child")
    assert "writer process stopped unexpectedly (exit code -9)" in str(out["after_kill"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return stat[0] != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc")
def test_the_child_dies_with_its_parent_even_by_sigkill(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", ORPHAN, str(tmp_path)], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)


def test_auto_starts_the_writer_process_from_500_series() -> None:
    from okx_collector.config import Settings
    from okx_collector.live.run import _wants_writer_process

    m1, m5 = Timeframe.parse("1m"), Timeframe.parse("5m")
    symbols = tuple(f"S{i}/USDT" for i in range(250))
    assert _wants_writer_process(Settings(symbols=symbols, timeframes=(m1, m5)))
    assert not _wants_writer_process(Settings(symbols=symbols[:249], timeframes=(m1, m5)))
    assert _wants_writer_process(Settings(symbols=symbols[:1], writer_process="on"))
    assert not _wants_writer_process(Settings(symbols=symbols, timeframes=(m1, m5),
                                              writer_process="off"))  # fmt: skip
