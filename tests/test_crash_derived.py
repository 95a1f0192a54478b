"""kill -9 during a backfill of mark and index candles, then a rerun: the same dataset as an
uninterrupted run, every value the simulator's own (real processes, real signals, real files)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from okx_collector.simulator.thread import SimulatorThread
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe
from tests.conftest import SIM_START
from tests.crash_helpers import Cli, assert_same_dataset, iso, read_dataset, temp_files, wait_until

TF1 = Timeframe.parse("1m")
SINCE = int(datetime(2026, 8, 30, 12, tzinfo=UTC).timestamp() * 1000)
UNTIL = int(datetime(2026, 9, 1, 12, tzinfo=UTC).timestamp() * 1000)
SERIES = (("mark", "BTC-USDT-SWAP"), ("index", "BTC-USDT"))


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    """At OKX's own limits: 2 days of 1m mark and index candles are ~58 history requests each at
    10 per 2 s, so a run takes ~12 s and can be killed part-way."""
    with SimulatorThread(seed=3, speed=1.0, start_ms=SIM_START, rate_limit_scale=1.0) as s:
        yield s


def args(sim: SimulatorThread, data: Path) -> list[str]:
    return [
        "backfill", "--data-dir", str(data), "--rest-url", sim.rest_url,
        "--symbols", "BTC/USDT:USDT", "--timeframes", "1m", "--since", iso(SINCE),
        "--until", iso(UNTIL), "--series", "mark,index", "--no-funding",
    ]  # fmt: skip


def price_requests(sim: SimulatorThread) -> int:
    return sum(
        n for route, n in sim.stats.rest_by_route.items() if "price" in route or "index" in route
    )


def test_kill_9_then_rerun_equals_an_uninterrupted_run(
    sim: SimulatorThread, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    with Cli(args(sim, reference), tmp_path / "ref.err") as run:
        assert run.wait(120) == 0, run.stderr()
    store = Store(reference)
    for price, sid in SERIES:
        table = store.read_price_candles(price, sid, TF1)  # type: ignore[arg-type]
        cols = [table.column(c).to_pylist() for c in ("ts", "open", "high", "low", "close")]
        got = list(zip(*cols, strict=True))
        helper = sim.derived.mark_candles if price == "mark" else sim.derived.index_candles
        assert got == [tuple(r) for r in helper(sid, "1m", SINCE, UNTIL)] and len(got) == 2 * 1440
    data = tmp_path / "data"
    killed = 0
    for i, delay in enumerate((1.0, 2.5, 4.0)):
        before = price_requests(sim)
        with Cli(args(sim, data), tmp_path / f"killed{i}.err") as run:
            wait_until(lambda: price_requests(sim) > before or not run.running, 20, "a request")  # noqa: B023
            time.sleep(delay)
            killed += run.running
            run.kill_9_unless_done()
        read_dataset(data)  # no torn file is ever visible
    assert killed >= 2
    with Cli(args(sim, data), tmp_path / "rerun.err") as run:
        assert run.wait(120) == 0, run.stderr()
    assert not temp_files(data)
    assert_same_dataset(data, reference)
