"""Crash safety and shutdown, with real processes, real signals and real files (DESIGN §5.3, §6).

The CLI runs as `python -m okx_collector` subprocesses against a simulator served from a thread
of the test process. Backfills use OKX's documented rate limits (so that a few days of 1m candles
take seconds and can be killed part-way); live collection runs the simulator's clock at 120x.
"""

from __future__ import annotations

import random
import shutil
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from okx_collector.simulator.thread import SimulatorThread
from okx_collector.status import SeriesStatus, collect_status
from okx_collector.store import Store
from okx_collector.timeframes import MINUTE_MS, Timeframe
from tests.collect_helpers import assert_exact, stored_rows
from tests.conftest import SIM_START
from tests.crash_helpers import (
    LOG_LINE,
    Cli,
    assert_same_dataset,
    collect_args,
    iso,
    parquet_files,
    read_dataset,
    temp_files,
    wait_until,
)

TF1 = Timeframe.parse("1m")

# Backfill: three spot pairs (and their perpetuals' funding), 1m, three days across a month end.
BF_SYMBOLS = "BTC/USDT,ETH/USDT,ADA/USDT"
BF_SPOTS = ("BTC-USDT", "ETH-USDT", "ADA-USDT")
BF_SINCE = int(datetime(2026, 8, 30, 12, tzinfo=UTC).timestamp() * 1000)
BF_UNTIL = int(datetime(2026, 9, 2, 12, tzinfo=UTC).timestamp() * 1000)

# Collect: a spot pair and a perpetual, 1m candles closing every 0.5 s.
SPEED = 120.0
COLLECT_INSTS = ("BTC-USDT", "ETH-USDT-SWAP")


# -- backfill ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bsim() -> Iterator[SimulatorThread]:
    """A simulator at OKX's own rate limits: ~45 history pages take ~4.5 s."""
    assert BF_UNTIL < SIM_START
    with SimulatorThread(seed=3, speed=1.0, start_ms=SIM_START, rate_limit_scale=1.0) as sim:
        yield sim


def backfill_args(sim: SimulatorThread, data: Path) -> list[str]:
    return [
        "backfill", "--data-dir", str(data), "--rest-url", sim.rest_url,
        "--symbols", BF_SYMBOLS, "--timeframes", "1m", "--since", iso(BF_SINCE),
        "--until", iso(BF_UNTIL),
    ]  # fmt: skip


def candle_requests(sim: SimulatorThread) -> int:
    routes = sim.stats.rest_by_route
    return routes.get("market/history-candles", 0) + routes.get("market/candles", 0)


def run_backfill(sim: SimulatorThread, data: Path, log: Path) -> str:
    """An uninterrupted backfill; returns its stderr."""
    with Cli(backfill_args(sim, data), log) as run:
        code = run.wait(60)
    assert code == 0, run.stderr()
    return run.stderr()


@pytest.fixture(scope="module")
def reference(bsim: SimulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dataset of an uninterrupted run, checked against the simulator's own data."""
    root = tmp_path_factory.mktemp("reference")
    data = root / "data"
    run_backfill(bsim, data, root / "backfill.err")
    store = Store(data)
    for inst_id in BF_SPOTS:
        got = stored_rows(store, inst_id, TF1)
        expected = [tuple(r) for r in bsim.market.candles(inst_id, "1m", BF_SINCE, BF_UNTIL)]
        assert got == expected and len(got) == 3 * 1440
        sources = store.read_candles(inst_id, TF1).column("source").to_pylist()
        assert set(sources) == {"backfill"}
        funding = store.read_funding(f"{inst_id}-SWAP")
        assert funding.column("funding_time").to_pylist() == [
            r[0] for r in bsim.market.funding_history(f"{inst_id}-SWAP", BF_SINCE, BF_UNTIL)
        ]
    # one file per past UTC month, and the newest month in day files
    names = {p.name for p in parquet_files(data / "candles")}
    assert "2026-08.parquet" in names and "2026-09.parquet" not in names
    assert {n for n in names if n != "2026-08.parquet"} <= {
        f"2026-09-{d:02d}.parquet" for d in range(1, 31)
    }
    assert not temp_files(data)
    return data


def wait_for_moment(sim: SimulatorThread, run: Cli, moment: str, before: int, data: Path) -> None:
    if moment == "fetching":
        wait_until(lambda: candle_requests(sim) > before or not run.running, 15,
                   "the first candle request")  # fmt: skip
    elif moment == "writing":
        wait_until(lambda: temp_files(data) or not run.running, 15,
                   "a temp file (journal or partition)")  # fmt: skip


# Kill points, in order, all into one data dir: each run resumes from what the previous ones left.
# "start": s after spawn; "fetching": s after the run's first candle request; "writing": as soon as
# a candle temp file exists (a kill in the middle of a Parquet write, most of the time).
KILL_POINTS = [("start", 0.3), ("fetching", 0.8), ("writing", 0.0), ("fetching", 1.5),
               ("fetching", 2.3)]  # fmt: skip


def test_kill_9_at_any_moment_then_rerun_equals_an_uninterrupted_run(
    bsim: SimulatorThread, reference: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    left: list[Path] = []  # temp files left by a killed writer, for the next run to remove
    killed = 0
    for i, (moment, delay) in enumerate(KILL_POINTS):
        before = candle_requests(bsim)
        with Cli(backfill_args(bsim, data), tmp_path / f"killed{i}.err") as run:
            wait_for_moment(bsim, run, moment, before, data)
            time.sleep(delay)
            # A run may be done before its kill point (writes are one small file per page):
            # the later ones have the least left to do.
            killed += run.running
            run.kill_9_unless_done()
        if moment != "start":  # this run got past its start-up repair
            for path in left:
                assert not path.exists()
                assert f"removed stale temp file {path}" in run.stderr()
            left = []
        left += temp_files(data)
        # Readers never see a torn file, whenever the writer died (read_dataset reads them all).
        rows = sum(t.num_rows for t in read_dataset(data).values())
        print(f"kill at {moment}+{delay}s: {rows} rows stored, {len(left)} temp files left")
    assert killed >= 2
    err = run_backfill(bsim, data, tmp_path / "rerun.err")
    for path in left:
        assert f"removed stale temp file {path}" in err
    assert not temp_files(data)
    assert_same_dataset(data, reference)


def test_truncated_file_is_moved_aside_reported_and_refetched(
    bsim: SimulatorThread, reference: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(reference, data)
    victims = [data / "candles" / "BTC-USDT" / "1m" / "2026-08.parquet",
               data / "funding" / "ETH-USDT-SWAP" / "2026.parquet"]  # fmt: skip
    for path in victims:
        content = path.read_bytes()
        path.write_bytes(content[: len(content) // 2])
    before = candle_requests(bsim)
    err = run_backfill(bsim, data, tmp_path / "rerun.err")
    for path in victims:
        assert f"moved unreadable file {path} aside" in err, err
        moved = list(path.parent.glob(f".{path.name}.corrupt-*"))
        assert len(moved) == 1 and moved[0].stat().st_size > 0
    # Only the lost month is fetched again: its 36 h of 1m candles = 8 pages of 300.
    assert 1 <= candle_requests(bsim) - before <= 9
    assert not temp_files(data)
    assert_same_dataset(data, reference)


def test_a_damaged_first_partition_is_a_gap_in_status_and_refetched(
    bsim: SimulatorThread, reference: Path, tmp_path: Path
) -> None:
    """The first month of a series torn: `status` (a read) reports its candles as a gap without
    touching the file; a later backfill whose --since starts after its first day still moves it
    aside and fetches it again, and the dataset equals the reference."""
    data = tmp_path / "data"
    shutil.copytree(reference, data)
    first = data / "candles" / "BTC-USDT" / "1m" / "2026-08.parquet"
    content = first.read_bytes()
    first.write_bytes(content[: len(content) // 3])
    lost = pq.read_metadata(reference / first.relative_to(data)).num_rows
    now = BF_UNTIL + 3_600_000

    def btc_status() -> SeriesStatus:
        found = [s for s in collect_status(Store(data), now) if s.name == "BTC-USDT 1m"]
        return found[0]

    status = btc_status()
    assert status.coverage.gap_count == 1 and status.coverage.missing == lost
    assert status.coverage.gaps[0].start == BF_SINCE  # 12:00, where the series began
    assert first.exists() and first.read_bytes() == content[: len(content) // 3]  # untouched
    args = backfill_args(bsim, data)
    args[args.index("--since") + 1] = iso(BF_SINCE + 24 * 3_600_000)  # after the first day
    with Cli(args, tmp_path / "rerun.err") as run:
        assert run.wait(60) == 0, run.stderr()
    assert f"moved unreadable file {first} aside" in run.stderr()
    assert btc_status().coverage.gap_count == 0
    assert_same_dataset(data, reference)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_one_signal_stops_backfill_with_a_summary_and_the_rerun_completes(
    bsim: SimulatorThread, reference: Path, tmp_path: Path, signum: signal.Signals
) -> None:
    data = tmp_path / "data"
    before = candle_requests(bsim)
    with Cli(backfill_args(bsim, data), tmp_path / "interrupted.err") as run:
        wait_until(lambda: candle_requests(bsim) > before, 15, "the first candle request")
        time.sleep(1.0)
        sent = time.monotonic()
        run.send(signum)
        code = run.wait(5)
        took = time.monotonic() - sent
    err = run.stderr()
    print(f"{signum.name}: exit {code} {took:.2f}s after the signal")
    assert code == 128 + signum, err  # 130, 143
    assert took < 3.0, err
    assert "Traceback" not in err and "never retrieved" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    [summary] = [line for line in lines if not LOG_LINE.match(line)]  # one line: what was saved
    assert summary.startswith(f"okx-collector: interrupted by {signum.name}: "), err
    assert " candle rows and " in summary and "rerun to resume" in summary, err
    assert not [line for line in lines if " ERROR " in line or " CRITICAL " in line], err
    assert "backfill interrupted: " in err and "backfill finished" not in err, err
    # What had been fetched was written on the way out; nothing is torn or left behind.
    assert read_dataset(data / "candles"), "nothing stored by the interrupted run"
    assert not temp_files(data)
    run_backfill(bsim, data, tmp_path / "rerun.err")
    assert not temp_files(data)
    assert_same_dataset(data, reference)


# -- collect -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def csim() -> Iterator[SimulatorThread]:
    with SimulatorThread(seed=11, speed=SPEED, start_ms=SIM_START, rate_limit_scale=1.0,
                         push_interval=0.05) as sim:  # fmt: skip
        yield sim


def assert_collected(
    sim: SimulatorThread, data: Path, earliest: int, latest: int, min_end: int
) -> None:
    """Every series exact from its first stored candle, which a `--since 10m` run started at
    some exchange time in [earliest, latest], to at least `min_end`."""
    store = Store(data)
    for inst_id in COLLECT_INSTS:
        first = store.first_candle_ts(inst_id, TF1)
        assert first is not None, f"nothing stored for {inst_id}"
        assert TF1.ceil(earliest - 10 * MINUTE_MS) <= first <= TF1.ceil(latest - 10 * MINUTE_MS)
        assert_exact(store, sim.sim, inst_id, "1m", first, min_end)


def store_after(run: Cli, sim: SimulatorThread, data: Path, bars: int) -> int:
    """Wait until every series `run` collects has stored the candle `bars` past the one open
    now (the run is live: "collecting" was logged), and return that candle's open: candles the
    run stored before its stop, which the test then compares with the market. Waited for, not
    timed: a loaded machine's collector may store a close later than usual."""
    end = TF1.floor(sim.now_ms()) + bars * TF1.ms
    store = Store(data)

    def stored() -> bool:
        return all((store.last_candle_ts(i, TF1) or 0) >= end for i in COLLECT_INSTS)

    wait_until(lambda: not run.running or stored(), 60, f"every series stored to {iso(end)}",
               every=0.1)  # fmt: skip
    assert run.running, run.stderr()
    return end


def test_collect_killed_at_random_moments_then_exact(csim: SimulatorThread, tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    print(f"kill moments from random.Random({seed})")
    data = tmp_path / "data"
    earliest = csim.now_ms()
    for i in range(4):
        with Cli(collect_args(csim, data), tmp_path / f"killed{i}.err") as run:
            time.sleep(rng.uniform(0.5, 3.0))  # start-up takes ~1 s: some kills land in it
            run.kill_9()
        read_dataset(data)  # every file readable right after the kill
    with Cli(collect_args(csim, data), tmp_path / "final.err") as run:
        run.wait_for_stderr("collecting ", 15)
        latest = csim.now_ms()
        end = store_after(run, csim, data, 3)
        run.send(signal.SIGTERM)
        code = run.wait(5)
    assert code == 0, run.stderr()
    assert_collected(csim, data, earliest, latest, end)
    assert read_dataset(data / "funding_live")
    assert not temp_files(data)


def test_sigterm_on_collect_flushes_and_exits_0(csim: SimulatorThread, tmp_path: Path) -> None:
    data = tmp_path / "data"
    earliest = csim.now_ms()
    with Cli(collect_args(csim, data), tmp_path / "collect.err") as run:
        run.wait_for_stderr("collecting ", 15)
        latest = csim.now_ms()
        end = store_after(run, csim, data, 3)
        sent = time.monotonic()
        run.send(signal.SIGTERM)
        code = run.wait(5)
        took = time.monotonic() - sent
    err = run.stderr()
    assert code == 0, err
    assert took < 5.0
    assert "SIGTERM received" in err and "stopped cleanly" in err, err
    assert "Traceback" not in err and "error:" not in err, err
    # What was stored before the signal stays, exact, and the stop added nothing wrong.
    assert_collected(csim, data, earliest, latest, end)
    assert not temp_files(data)
    # A clean stop leaves the journal merged: the partitions alone are the dataset.
    assert not list((data / "journal").rglob("*.parquet"))


def test_second_signal_during_shutdown_exits_at_once(csim: SimulatorThread, tmp_path: Path) -> None:
    data = tmp_path / "data"
    earliest = csim.now_ms()
    with Cli(collect_args(csim, data), tmp_path / "collect.err") as run:
        run.wait_for_stderr("collecting ", 15)
        latest = csim.now_ms()
        end = store_after(run, csim, data, 2)
        run.send(signal.SIGTERM)
        run.wait_for_stderr("SIGTERM received", 5)
        sent = time.monotonic()
        run.send(signal.SIGINT)
        code = run.wait(5)
        took = time.monotonic() - sent
    err = run.stderr()
    assert code == 128 + signal.SIGINT, err  # the second signal's exit, not a finished shutdown
    assert took < 1.0
    assert "Traceback" not in err
    read_dataset(data)  # no torn file
    # What the next start does: any temp file of the abandoned write goes, nothing else is wrong.
    notes = Store(data).recover()
    assert all(n.action == "removed_temp" for n in notes), notes
    assert not temp_files(data)
    assert_collected(csim, data, earliest, latest, end)


def test_sigterm_during_collect_start_up_exits_0(csim: SimulatorThread, tmp_path: Path) -> None:
    with Cli(collect_args(csim, tmp_path / "data"), tmp_path / "collect.err") as run:
        time.sleep(0.2)  # python -m okx_collector is still importing its modules
        run.send(signal.SIGTERM)
        code = run.wait(5)
    assert code == 0, (code, run.stderr())
