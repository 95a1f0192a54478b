"""Helpers for the crash tests: the CLI as a real subprocess, waiting on it, killing a child at
random instants, comparing datasets."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from okx_collector.simulator.thread import SimulatorThread
from okx_collector.store.atomic import temp_owner_pid

# A line written by the collector's logging (text format), as opposed to its one-line errors.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")


def iso(ms: int) -> str:
    """An ISO UTC time as `--since`/`--until` take it."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def child_env() -> dict[str, str]:
    """The test's environment without settings that would override the flags' defaults."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OKX_COLLECTOR_") and k != "POLL_INTERVAL"
    }


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.002
) -> Any:
    """Poll `predicate` every `every` s until it is truthy; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def collect_args(sim: SimulatorThread, data: Path) -> list[str]:
    """`collect` of two series of 1m into `data`, polling fast when their stream is stale."""
    return [
        "collect", "--data-dir", str(data), "--rest-url", sim.rest_url, "--ws-url", sim.ws_url,
        "--symbols", "BTC/USDT,ETH/USDT:USDT", "--timeframes", "1m", "--since", "10m",
        "--mode", "auto", "--poll-interval", "0.5", "--heartbeat", "1",
    ]  # fmt: skip


class Cli:
    """`python -m okx_collector ARGS` in a subprocess; stderr goes to a file the test can watch.

    Use `with`: on exit a process still running is killed and reaped.
    """

    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log = log
        with log.open("wb") as err, log.with_suffix(".out").open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "okx_collector", *args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=child_env(),
            )  # fmt: skip
        self.started = time.monotonic()

    def __enter__(self) -> Cli:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def send(self, signum: int) -> None:
        assert self.running, f"the process ended before {signal.Signals(signum).name}:\n" + (
            self.stderr()
        )
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running {timeout}s later:\n{self.stderr()[-3000:]}"
            ) from None

    def kill_9(self) -> None:
        """SIGKILL now; the process must have been running (else the kill point was missed)."""
        self.send(signal.SIGKILL)
        assert self.wait(10) == -signal.SIGKILL

    def kill_9_unless_done(self) -> None:
        """SIGKILL now, unless the process already finished its work with exit 0. (A late kill
        point can come after a resumed run has nothing left to do.)"""
        if self.running:
            self.kill_9()
        else:
            assert self.proc.returncode == 0, self.stderr()

    def wait_for_stderr(self, text: str, timeout: float) -> None:
        def seen() -> bool:
            if text in self.stderr():
                return True
            assert self.running, f"exited {self.proc.returncode} before {text!r}:\n{self.stderr()}"
            return False

        wait_until(seen, timeout, f"{text!r} on stderr")


def walk_files(root: Path) -> list[Path]:
    """Every file under `root`, hidden ones included, sorted."""
    found = [Path(d) / name for d, _, names in os.walk(root) for name in names]
    return sorted(found)


def parquet_files(root: Path) -> list[Path]:
    """The dataset's visible Parquet files (not temp or moved-aside ones, which are hidden)."""
    return [p for p in walk_files(root) if p.name.endswith(".parquet") and p.name[0] != "."]


def temp_files(root: Path) -> list[Path]:
    """The store's temp files (`.NAME.parquet.tmp-<pid>-<hex>`) under `root`."""
    return [p for p in walk_files(root) if temp_owner_pid(p.name) is not None]


def read_dataset(root: Path) -> dict[str, pa.Table]:
    """Every Parquet file, read whole with pyarrow (raises if any is torn), by relative path."""
    tables = {}
    for path in parquet_files(root):
        try:
            tables[str(path.relative_to(root))] = pq.read_table(path)
        except Exception as exc:
            raise AssertionError(f"unreadable Parquet file {path}: {exc}") from exc
    return tables


def assert_same_dataset(got_root: Path, want_root: Path) -> None:
    """The same files, each with the same rows: every column (`source` too), every value."""
    got, want = read_dataset(got_root), read_dataset(want_root)
    assert sorted(got) == sorted(want)
    for name, table in want.items():
        other = got[name]
        counts = f"{name}: {other.num_rows} rows, expected {table.num_rows}"
        assert other.num_rows == table.num_rows, counts
        assert other.schema.names == table.schema.names, name
        for column in table.schema.names:
            a, b = other.column(column).to_pylist(), table.column(column).to_pylist()
            if a != b:
                first = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
                raise AssertionError(f"{name} {column} row {first}: {a[first]} != {b[first]}")


def kill_at_random_instants(
    argv: list[str],
    root: Path,
    pristine: Path,
    *,
    rounds: int,
    seed: int,
    earliest: float,
    check: Callable[[Path], object],
) -> int:
    """Run `argv` (working on `root`, a copy of `pristine`) once uninterrupted to time it; then,
    on a fresh copy, start it `rounds` times, each SIGKILLed at a random instant between
    `earliest` s and that time (unless it has finished), and `check(root)` after each.

    Returns how many runs were killed; each run resumes what the previous ones left. Until a
    first kill lands, a run that finished first (the timing run was slow on a loaded machine)
    starts over from the pristine copy with the bound halved, so that a kill happens.
    """
    shutil.copytree(pristine, root)
    started = time.monotonic()
    subprocess.run(argv, stdout=subprocess.DEVNULL, env=child_env(), check=True, timeout=120)
    latest = max(earliest + 0.1, time.monotonic() - started)
    shutil.rmtree(root)
    shutil.copytree(pristine, root)
    rng = random.Random(seed)
    kills = done = 0
    for _ in range(rounds + 8):
        if done == rounds:
            break
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=child_env())
        time.sleep(rng.uniform(earliest, latest))
        killed = proc.poll() is None
        if killed:
            proc.kill()
            kills += 1
        proc.wait(60)
        check(root)
        if kills == 0 and not killed:
            shutil.rmtree(root)
            shutil.copytree(pristine, root)
            latest = max(earliest + 0.05, latest / 2)
            continue
        done += 1
    return kills
