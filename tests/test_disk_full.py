"""A full disk: `backfill` and `collect` stop within seconds with one line naming the file and the
cause, leave nothing torn, and a rerun after freeing space resumes and ends exact.

The disk is a small tmpfs mounted by the test (skipped where mounting is not permitted), filled
to the last byte by a filler file; deleting the filler is "freeing some space".
"""

from __future__ import annotations

import asyncio
import errno
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from okx_collector.backfill import run_backfill_async
from okx_collector.backfill.progress import SilentProgress
from okx_collector.config import build_settings
from okx_collector.simulator.thread import SimulatorThread
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe
from tests.collect_helpers import stored_rows
from tests.conftest import SIM_START, fast_delays
from tests.crash_helpers import LOG_LINE, Cli, collect_args, iso, read_dataset, temp_files

TF1 = Timeframe.parse("1m")
SYMBOLS = "BTC/USDT,ETH/USDT,ADA/USDT"
SPOTS = ("BTC-USDT", "ETH-USDT", "ADA-USDT")
# Ten days of 1m for three pairs: 144 pages, ~14 s at OKX's limits. The first write (after the
# writer's 2 s batching) fails; before the fix the fetchers then filled the 64-slot queue and hung.
SINCE = int(datetime(2026, 8, 20, tzinfo=UTC).timestamp() * 1000)
UNTIL = int(datetime(2026, 8, 30, tzinfo=UTC).timestamp() * 1000)
DEADLINE_S = 20.0  # exit this soon after the start, or the test fails


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs mounted in the test's temp dir, unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
    except OSError as exc:
        pytest.skip(f"cannot run mount here ({exc}): this test needs a small tmpfs")
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.strip()}): "
                    "this test needs root or CAP_SYS_ADMIN")  # fmt: skip
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Fill `disk` to the last byte; returns the filler file (delete it to free the space)."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as fh:
        while chunk:
            try:
                fh.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                chunk = chunk[: len(chunk) // 2]
    return filler


def one_error_line(err: str) -> str:
    """The one line that is not a log line; no traceback, no unretrieved task exception."""
    assert "Traceback" not in err and "never retrieved" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not LOG_LINE.match(line)]
    assert len(lines) == 1, err
    assert not [line for line in err.splitlines() if " CRITICAL " in line], err
    return lines[0]


@pytest.fixture(scope="module")
def dsim() -> Iterator[SimulatorThread]:
    with SimulatorThread(seed=5, speed=1.0, start_ms=SIM_START, rate_limit_scale=0) as sim:
        yield sim


def test_backfill_into_a_full_disk_stops_with_one_line_then_the_rerun_resumes_exact(
    dsim: SimulatorThread, tmpfs: Path, tmp_path: Path
) -> None:
    data = tmpfs / "data"
    filler = fill(tmpfs)
    args = [
        "backfill", "--data-dir", str(data), "--rest-url", dsim.rest_url,
        "--symbols", SYMBOLS, "--timeframes", "1m", "--since", iso(SINCE), "--until", iso(UNTIL),
        "--no-funding",  # (a failed funding write ended the old code's run: the hang needs none)
    ]  # fmt: skip
    with Cli(args, tmp_path / "full.err") as run:
        code = run.wait(DEADLINE_S)
        took = time.monotonic() - run.started
    err = run.stderr()
    print(f"backfill on a full disk: exit {code} after {took:.1f}s")
    assert code == 1, err
    line = one_error_line(err)
    assert line.startswith(f"okx-collector: error: cannot write {data / 'journal'}/"), line
    assert ".parquet: No space left on device (errno 28); free some space and rerun" in line
    assert not temp_files(data), "a temp file of the failed write was left behind"
    read_dataset(data)  # nothing torn

    filler.unlink()  # free some space; the rerun resumes (in-process: unpaced, to be quick)
    settings = build_settings(
        {"data_dir": str(data), "rest_url": dsim.rest_url, "ws_url": dsim.ws_url,
         "symbols": SYMBOLS, "timeframes": "1m", "since": iso(SINCE), "until": iso(UNTIL),
         "funding": False},
        env={},
    )  # fmt: skip
    report = asyncio.run(
        run_backfill_async(
            settings, progress=SilentProgress(), rate_limit_scale=0, delays=fast_delays
        )
    )
    assert not report.interrupted and report.written > 0
    store = Store(data)
    for inst_id in SPOTS:
        got = stored_rows(store, inst_id, TF1)
        expected = [tuple(r) for r in dsim.market.candles(inst_id, "1m", SINCE, UNTIL)]
        assert got == expected and len(got) == 10 * 1440
    assert not temp_files(data)


@pytest.fixture(scope="module")
def csim() -> Iterator[SimulatorThread]:
    """1m candles close every 0.5 s."""
    with SimulatorThread(seed=13, speed=120.0, start_ms=SIM_START, rate_limit_scale=1.0,
                         push_interval=0.05) as sim:  # fmt: skip
        yield sim


def test_collect_on_a_disk_that_fills_up_stops_with_one_line(
    csim: SimulatorThread, tmpfs: Path, tmp_path: Path
) -> None:
    data = tmpfs / "data"
    with Cli(collect_args(csim, data), tmp_path / "collect.err") as run:
        run.wait_for_stderr("collecting ", 15)  # started: its repair pass has written
        fill(tmpfs)
        filled = time.monotonic()
        code = run.wait(DEADLINE_S)
        took = time.monotonic() - filled
    err = run.stderr()
    print(f"collect on a full disk: exit {code} {took:.1f}s after the disk filled")
    assert code == 1, err
    assert took < 10.0, err
    line = one_error_line(err)
    assert line.startswith(f"okx-collector: error: cannot write {data}/"), line
    assert "No space left on device (errno 28)" in line, line
    assert "stopped cleanly" not in err
    read_dataset(data)  # nothing torn
    assert not temp_files(data)
