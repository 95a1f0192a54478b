"""Benchmark live collection: 1,000 series of 1m candles pushed at OKX's cadence and at 4x that.

    python benchmarks/live.py [--series 1000] [--seconds 60] [--rates 1,4] [--store-rows 10]
        [--late-in-day] [--no-baseline | --baseline batch|lean] [--metrics [--scrape-interval 15]]
        [--profile PATH] [--kinds trade,mark,index,oi]

For each rate R (1 = OKX's cadence: an in-progress update every 0.5 s per series), the script
starts `okx-collector simulate --extra-instruments SERIES --push-interval 0.5/R --speed 1
--rate-limit-scale 1` in its own process, then runs against it, one after the other:

1. the collector: `python -m okx_collector collect --mode ws --symbols SIM0001/USDT,...
   --timeframes 1m --no-funding --since 5m --heartbeat 5 --log-format json` into a fresh data
   dir seeded with `--store-rows` 1m candles per series ending at the last closed minute, early in
   a minute: its start-up catch-up then has nothing to fetch (an empty store would cost 1,000 REST
   requests, about 50 s at OKX's pace). The seed is a day file per series and kind, as a stopped
   job leaves it, its rows computed from the simulator's own market model (`--seed 1`): equal to
   what it serves. With `--kinds` naming mark, index or oi, the series are perpetuals and each
   kind is seeded alike (empty mark and index series would cost 2,000 REST pages: minutes at
   OKX's 20 requests per 2 s per endpoint). `--late-in-day --store-rows 1440` seeds a full day
   and starts the simulator at 23:57 UTC, so that the run crosses midnight;
2. the baseline: a bare ccxt.pro consumer, nothing stored: one `watch_ohlcv_for_symbols` loop per
   batch of 100 series (one subscribe request each, as OKX's 480 requests an hour per connection
   require), every push parsed and cached by ccxt. `--baseline lean` re-arms, once subscribed, a
   watch of one series per batch instead of the batch's (ccxt's cost of receiving alone).

Each is measured over a window of `--seconds` (stretched so that it holds at least one candle close
and the 10 s after it) that starts once it holds every subscription and has sent no REST request
for 3 s: updates/s delivered (the simulator's `ws_pushes` delta), CPU (utime + stime from
/proc/PID/stat) per 1,000 updates and as a share of a core, the simulator's own CPU, and peak
memory (ru_maxrss from wait4, its whole life: the target; and RSS sampled every 0.1 s, to tell
start-up, running and the stop apart). Close-to-disk latency, in exchange
time (= real time at speed 1), comes from the collector's heartbeat lines (`close->disk p50 ..
p99 ..`, per heartbeat, trade candles only: the table shows the worst heartbeat's) and,
independently, from the files, per kind of candle (trade, mark, index): each kind's journal
folder is listed every 20 ms and each new file's ctime (its rename, which made its rows durable
and visible) is the time of every series' candle in it. With mark or index candles the bare
consumer takes the same perpetuals' trade candles (ccxt.pro has no watch of those channels), so
CPU is compared per update. The collector is then
stopped with SIGTERM and must exit 0 within 30 s. Exit status 1 if a target is missed (issue 13:
CPU <= 1.0x the baseline's per update; p99 close->disk <= 0.1 s and peak memory <= 200 MB up to
1,000 series, <= 0.25 s and <= 300 MB beyond; >= 97% of the offered updates delivered).

`--metrics` runs the collector with `--metrics-port` and scrapes its /metrics every
`--scrape-interval` seconds (Prometheus' common 15 s) throughout, to measure what metrics cost:
compare the CPU rows of a run with and without it (docs/operations.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from procstat import cpu_seconds, memory_mb
from simproc import Simulator

from okx_collector.models import Candle, OpenInterest, PriceCandle
from okx_collector.simulator import DerivedMarket, Market
from okx_collector.store import Store
from okx_collector.store.layout import Period, partition_of
from okx_collector.store.meta import record_first
from okx_collector.store.schema import (
    INDEX_CANDLES,
    MARK_CANDLES,
    OPEN_INTEREST,
    candles_table,
    open_interest_table,
    price_candles_table,
)
from okx_collector.timeframes import MINUTE_MS, Timeframe

TF = Timeframe.parse("1m")
SIM_SEED = 1  # the simulator's market seed: the store seed is computed from the same model
OKX_PUSH_INTERVAL = 0.5  # real seconds between in-progress pushes per series on OKX (2 per s)
HEARTBEAT = 5.0
AFTER_CLOSE = 10.0  # real seconds of a window kept after its last close (the write burst)
SCAN_AFTER = 20.0  # real seconds after a close at which the partition files are stat'ed
COLLECTOR = [sys.executable, "-m", "okx_collector"]  # how the collector is started
HEARTBEAT_RE = re.compile(
    r"live=(?P<live>\d+) .*rows_written=(?P<rows>\d+) reconnects=(?P<reconnects>\d+) "
    r"fallbacks=(?P<fallbacks>\d+) catchups=(?P<catchups>\d+) queue=(?P<queue>\d+)"
    r"(?: close->disk p50 (?P<p50>[\d.]+)s p99 (?P<p99>[\d.]+)s)?"
)
BASELINE = r"""
import asyncio, signal, sys
import ccxt.pro
rest, ws, timeframe, symbols = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
LEAN = sys.argv[5] == "lean"
BATCH = 100  # series per subscribe request, as the collector (and any OKX client) must batch

async def main():
    ex = ccxt.pro.okx({"urls": {"api": {"rest": rest, "ws": ws}},
                       "options": {"fetchMarkets": {"types": ["spot", "swap"]}}})
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await ex.load_markets()
    updates = 0

    async def watch(batch):
        # One subscribe request per batch: OKX allows 480 subscribe requests an hour per
        # connection, so one `watch_ohlcv` (one request) per series cannot subscribe 1,000.
        nonlocal updates
        pairs = [[s, timeframe] for s in batch]
        await ex.watch_ohlcv_for_symbols(pairs)
        while True:
            # lean: once subscribed, wait on one series of the batch (ccxt still parses every
            # push); else the whole batch's watch again, as its documentation shows
            await ex.watch_ohlcv_for_symbols(pairs[:1] if LEAN else pairs)
            updates += 1

    tasks = [asyncio.create_task(watch(symbols[i:i + BATCH]))
             for i in range(0, len(symbols), BATCH)]
    print("ready", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    failed = [r for r in await asyncio.gather(*tasks, return_exceptions=True)
              if not isinstance(r, asyncio.CancelledError)]
    await ex.close()
    print(f"updates {updates} failed {len(failed)} {failed[:1]}", flush=True)

asyncio.run(main())
"""


# -- processes -----------------------------------------------------------------------------------


class Footprint(threading.Thread):
    """Memory of a process and its children (procstat.memory_mb), sampled every 0.1 s until
    the process is gone; `peak(since, until)` of a phase (monotonic times)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float]] = []  # (monotonic, MB)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                total, _ = memory_mb(self.pid)
            except (OSError, KeyError):
                continue
            self.samples.append((time.monotonic(), total))

    def peak(self, since: float = 0.0, until: float = float("inf")) -> float:
        return max((mb for t, mb in self.samples if since <= t < until), default=0.0)


def terminate(proc: subprocess.Popen[str], timeout: float) -> tuple[int, float, float]:
    """SIGTERM, then reap: (exit code, seconds to exit, peak RSS in MB); SIGKILL after timeout."""
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - start > timeout:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.monotonic() - start, usage.ru_maxrss / 1024


class MetricsScraper(threading.Thread):
    """GETs the collector's /metrics every `interval` s, as Prometheus would; keeps the timings."""

    def __init__(self, port: int | None, interval: float) -> None:
        super().__init__(daemon=True)
        self.port = port  # None: metrics off, nothing scraped
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.interval = interval
        self.stop = threading.Event()
        self.scrapes: list[tuple[float, int]] = []  # (seconds, bytes) of each good scrape
        self.failures = 0

    def flags(self) -> list[str]:
        return [] if self.port is None else ["--metrics-port", str(self.port)]

    def finish(self) -> list[str]:
        """Stop scraping; the summary note (none when metrics are off)."""
        self.stop.set()
        self.join(timeout=15)
        return [] if self.port is None else [self.summary()]

    def run(self) -> None:
        if self.port is None:
            return
        while not self.stop.wait(self.interval):
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as response:  # noqa: S310
                    size = len(response.read())
            except OSError:
                self.failures += 1  # not listening yet (start-up), or stopping
                continue
            self.scrapes.append((time.monotonic() - started, size))

    def summary(self) -> str:
        if not self.scrapes:
            return f"metrics: no scrape answered ({self.failures} failed)"
        times = sorted(t for t, _ in self.scrapes)
        size = self.scrapes[-1][1] / 1024
        p50 = percentile(times, 0.5) * 1000
        return (
            f"metrics: {len(times)} scrapes every {self.interval:g} s, {size:.0f} KiB each, "
            f"took p50 {p50:.0f} ms max {times[-1] * 1000:.0f} ms ({self.failures} not answered)"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LineReader(threading.Thread):
    """Collects a child's output lines with their arrival time (monotonic)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[tuple[float, str]] = []

    def run(self) -> None:
        for line in self.stream:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for _, line in self.lines):
            if time.monotonic() > deadline or not self.is_alive():
                tail = "\n".join(line for _, line in self.lines[-5:])
                raise RuntimeError(f"no {text!r} from the child:\n{tail}")
            time.sleep(0.1)


# -- the store seed and the file-based latency ---------------------------------------------------


def late_in_day() -> int:
    """23:57 UTC of the current day: the hour file is at its fullest (58-60 rows) at the closes
    before midnight, and after midnight the writer merges every series' ended day (24 hour files,
    1,440 rows) into its day file between closes."""
    now = datetime.now(UTC).replace(hour=23, minute=57, second=0, microsecond=0)
    return int(now.timestamp() * 1000)


class Seed:
    """The store a stopped job leaves: `rows` closed 1m candles per series (within the last
    one's day) of each collected kind, equal to what the simulator serves (its own market model,
    `--seed 1`), so that the start-up catch-up finds nothing to fetch and a value fetched again
    is no change. Empty mark and index series would cost a REST page each (2,000 series at OKX's
    20 requests per 2 s per endpoint: minutes)."""

    def __init__(self, series: int, kinds: list[str], rows: int) -> None:
        self.market = Market(SIM_SEED, extra_instruments=series)
        self.derived = DerivedMarket(self.market)
        self.series, self.kinds, self.rows = series, kinds, rows
        self.swaps = any(k != "trade" for k in kinds)

    def write(self, data_dir: Path, last_open: int) -> None:
        """Seed `data_dir` with candles ending at `last_open` (open interest: at the closes of
        those candles), one day file per series and kind."""
        store = Store(data_dir)
        day = partition_of(last_open, Period.DAY)
        first = max(last_open - (self.rows - 1) * MINUTE_MS, day.start)
        end = last_open + MINUTE_MS
        for i in range(1, self.series + 1):
            for directory, table in self._tables(store, i, first, end):
                directory.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, directory / day.filename)
                record_first(directory, table.column("ts")[0].as_py())  # as a compaction does

    def _tables(self, store: Store, i: int, first: int, end: int) -> list[tuple[Path, pa.Table]]:
        """(folder, rows) of series number `i`'s kinds, candles opening in [first, end)."""
        spot, perp = f"SIM{i:04d}-USDT", f"SIM{i:04d}-USDT-SWAP"
        out: list[tuple[Path, pa.Table]] = []
        if "trade" in self.kinds:
            inst_id = perp if self.swaps else spot
            candles = [Candle(*c, "ws") for c in self.market.candles(inst_id, TF.name, first, end)]
            out.append(
                (store.layout.candle_dir(inst_id, TF), candles_table(inst_id, TF.name, candles))
            )
        if "mark" in self.kinds:
            marks = [
                PriceCandle(*r, "ws") for r in self.derived.mark_candles(perp, TF.name, first, end)
            ]
            out.append((store.kind_series(MARK_CANDLES, perp, TF).directory,
                        price_candles_table(perp, TF.name, marks)))  # fmt: skip
        if "index" in self.kinds:  # the index behind the perpetual: SIMnnnn-USDT
            indexes = [
                PriceCandle(*r, "ws") for r in self.derived.index_candles(spot, TF.name, first, end)
            ]
            out.append((store.kind_series(INDEX_CANDLES, spot, TF).directory,
                        price_candles_table(spot, TF.name, indexes)))  # fmt: skip
        if "oi" in self.kinds:  # the value in force at each seeded candle's close
            closes = range(first + MINUTE_MS, end + MINUTE_MS, MINUTE_MS)
            values = [OpenInterest(*self.derived.open_interest_at(perp, ts), "ws") for ts in closes]
            out.append((store.kind_series(OPEN_INTEREST, perp, TF).directory,
                        open_interest_table(perp, TF.name, values)))  # fmt: skip
        return out


def merge_report(data_dir: Path, inst_ids: list[str]) -> str | None:
    """After a run across midnight: how many series had their ended day merged into its day
    file, and how many hour files of ended days are left (None if no day ended)."""
    merged = left = ended = 0
    for inst_id in inst_ids:
        names = [p.name for p in (data_dir / "candles" / inst_id / TF.name).glob("*.parquet")]
        days = sorted({n[:10] for n in names})
        if len(days) < 2:
            continue
        ended += 1
        stale = [n for n in names if "T" in n and n[:10] < days[-1]]
        left += len(stale)
        merged += not stale and f"{days[-2]}.parquet" in names
    if not ended:
        return None
    return f"ended days merged into day files: {merged} of {ended} series ({left} hour files left)"


class FileLatency(threading.Thread):
    """The delay from each close to the journal file that made its candle durable, per kind of
    candle (trade, mark, index): each kind's journal folder is listed every 20 ms and each new
    file's inst_id and ts columns are read (before a compaction, a second or more later, merges
    and deletes it); its ctime is when its rename made it visible. A series whose close is in no
    file seen counts as never (inf)."""

    POLL_S = 0.02

    def __init__(
        self, data_dir: Path, series: dict[str, list[str]], closes: list[tuple[int, float]]
    ) -> None:
        """`series`: journal folder (`candles`, `mark_candles`, ...) -> the series ids in it."""
        super().__init__(daemon=True)
        self.data_dir, self.series, self.closes = data_dir, series, closes
        # folder -> close (exchange ms) -> seconds per series; inf = not seen
        self.delays: dict[str, dict[int, list[float]]] = {k: {} for k in series}
        self.stop = threading.Event()
        self._seen: dict[tuple[str, str, int], float] = {}  # (folder, id, close ms) -> ctime

    def run(self) -> None:
        done: set[tuple[str, str]] = set()
        last = self.closes[-1][1] + SCAN_AFTER if self.closes else time.time()
        while not self.stop.wait(self.POLL_S) and time.time() < last:
            for kind in self.series:
                self._scan(kind, done)
        for kind, ids in self.series.items():
            for close_ms, close_wall in self.closes:
                delays = []
                for inst_id in ids:
                    at = self._seen.get((kind, inst_id, close_ms), 0.0)
                    delays.append(at - close_wall if at >= close_wall else float("inf"))
                self.delays[kind][close_ms] = delays

    def _scan(self, kind: str, done: set[tuple[str, str]]) -> None:
        folder = self.data_dir / "journal" / kind
        try:
            found = [p.name for p in folder.iterdir()]
        except FileNotFoundError:
            return
        for name in sorted(n for n in found if n.endswith(".parquet") and n[0] != "."):
            if (kind, name) in done:
                continue
            done.add((kind, name))
            try:
                at = (folder / name).stat().st_ctime
                table = pq.read_table(folder / name, columns=["inst_id", "ts"])
            except (FileNotFoundError, OSError):
                continue
            for inst_id, ts in zip(table.column("inst_id").to_pylist(),
                                   table.column("ts").to_pylist(), strict=True):  # fmt: skip
                self._seen.setdefault((kind, inst_id, ts + MINUTE_MS), at)

    def summary(self, kind: str) -> FileDelays:
        ordered = sorted(d for ds in self.delays[kind].values() for d in ds)
        if not ordered:
            return FileDelays(*[float("nan")] * 4)
        return FileDelays(
            ordered[0], percentile(ordered, 0.5), percentile(ordered, 0.99), ordered[-1]
        )


@dataclass
class FileDelays:
    """Close-to-journal-file delays of one kind of candle over a window's closes (s)."""

    min: float
    p50: float
    p99: float
    max: float


JOURNAL_KIND = {"trade": "candles", "mark": "mark_candles", "index": "index_candles"}


# -- one measured run ----------------------------------------------------------------------------


@dataclass
class Window:
    seconds: float = 0.0
    updates: int = 0
    cpu: float = 0.0
    sim_cpu: float = 0.0
    stats: dict[str, int] = field(default_factory=dict)  # other simulator counter deltas

    @property
    def rate(self) -> float:
        return self.updates / self.seconds

    @property
    def core(self) -> float:
        return self.cpu / self.seconds

    @property
    def per_1k(self) -> float:
        return self.cpu / self.updates * 1000

    @property
    def sim_core(self) -> float:
        return self.sim_cpu / self.seconds


def wait_settled(sim: Simulator, subscriptions: int, timeout: float = 300.0) -> float:
    """Wait until the client holds its subscriptions and no REST request came for 3 s."""
    deadline = time.monotonic() + timeout
    quiet_since, last_rest = time.monotonic(), -1
    while time.monotonic() < deadline:
        stats = sim.stats()
        rest = stats["rest_requests"]
        if rest != last_rest:
            quiet_since, last_rest = time.monotonic(), rest
        if stats["ws_subscriptions"] >= subscriptions and time.monotonic() - quiet_since >= 3:
            return time.monotonic()
        time.sleep(0.5)
    raise RuntimeError(f"not settled after {timeout:.0f} s: {sim.stats()}")


def closes_between(sim: Simulator, start_wall: float, end_wall: float) -> list[tuple[int, float]]:
    """1m closes (exchange ms, wall time) between two wall times (speed 1: the clocks agree)."""
    offset = sim.now_ms() / 1000 - time.time()
    first = TF.ceil(int((start_wall + offset) * 1000))
    last = int((end_wall + offset) * 1000)
    return [(c, c / 1000 - offset) for c in range(first, last + 1, MINUTE_MS)]


def plan_window(sim: Simulator, seconds: float) -> tuple[float, list[tuple[int, float]]]:
    """(end wall time, closes in the window): at least one close, and AFTER_CLOSE after the last."""
    start = time.time()
    end = start + seconds
    closes = closes_between(sim, start, end) or closes_between(sim, start, start + 60)[:1]
    return max(end, closes[-1][1] + AFTER_CLOSE), closes


def measure(sim: Simulator, pid: int, end: float) -> Window:
    """CPU, updates and simulator counters of `pid` from now until wall time `end`."""
    t0 = time.monotonic()
    before, cpu0, sim0 = sim.stats(), cpu_seconds(pid), cpu_seconds(sim.pid)
    time.sleep(max(0.0, end - time.time()))
    after, cpu1, sim1 = sim.stats(), cpu_seconds(pid), cpu_seconds(sim.pid)
    window = Window(time.monotonic() - t0, after["ws_pushes"] - before["ws_pushes"], cpu1 - cpu0)
    window.sim_cpu = sim1 - sim0
    for key in ("rest_requests", "rate_limited", "ws_dropped", "ws_connections"):
        window.stats[key] = after[key] - before[key]
    return window


@dataclass
class Result:
    rate: int
    offered: float  # updates/s the simulator schedules
    collector: Window
    baseline: Window | None
    hb_p50: float | None
    hb_p99: float | None
    hb_rows: list[str]
    files: dict[str, FileDelays]  # by kind of candle (trade, mark, index)
    collector_rss: float  # ru_maxrss of the collector (wait4): its whole life
    mem_startup: float  # peak RSS sampled until it settled
    mem_running: float  # ... from then until SIGTERM
    mem_stopping: float  # ... after SIGTERM (a clean stop compacts the journal)
    baseline_rss: float | None
    collector_exit: int
    collector_exit_s: float
    startup_s: float
    notes: list[str]


def say(started: float, text: str) -> None:
    print(f"  {time.monotonic() - started:6.1f} s  {text}", flush=True)


def run_rate(args: argparse.Namespace, rate: int) -> Result:
    t0 = time.monotonic()
    kinds = args.kinds.split(",")
    # mark and index candles exist for perpetuals only: then the series are the synthetic swaps
    swaps = any(k != "trade" for k in kinds)
    inst_ids = [f"SIM{i:04d}-USDT{'-SWAP' if swaps else ''}" for i in range(1, args.series + 1)]
    symbols = ",".join(
        f"SIM{i:04d}/USDT{':USDT' if swaps else ''}" for i in range(1, args.series + 1)
    )
    streams = args.series * len(kinds)  # websocket subscriptions the collector holds
    interval = OKX_PUSH_INTERVAL / rate
    data_dir = Path(tempfile.mkdtemp(prefix="okx-bench-live-"))
    start = late_in_day() if args.late_in_day else None
    seed = Seed(args.series, kinds, args.store_rows)
    if start is not None and args.store_rows > 0:  # seeded up to the simulator's start
        seed.write(data_dir, start - MINUTE_MS)
    sim = Simulator(
        "--seed", str(SIM_SEED), "--extra-instruments", str(args.series),
        "--push-interval", str(interval),
        "--speed", "1", "--rate-limit-scale", str(args.sim_rate_limit_scale),
        *(["--start", datetime.fromtimestamp(start / 1000, UTC).isoformat()[:19]]
          if start is not None else []),
    )  # fmt: skip
    say(t0, f"simulator up ({args.series} extra instruments, push interval {interval:g} s)")
    notes: list[str] = []
    collector: subprocess.Popen[str] | None = None
    try:
        # -- the collector --
        if args.store_rows > 0 and start is None:
            # Seed and start early in a minute, so that no candle closes before the catch-up.
            left = 60 - (sim.now_ms() % MINUTE_MS) / 1000
            if left < 30:  # seeding takes up to ~10 s and start-up ~10-13 s
                time.sleep(left + 0.5)
            seeding = time.monotonic()
            seed.write(data_dir, TF.floor(sim.now_ms()) - MINUTE_MS)
            say(t0, f"store seeded in {time.monotonic() - seeding:.1f} s")
        profile = (
            ["-m", "cProfile", "-o", f"{args.profile}.{rate}x"] if args.profile else []
        )  # the collector's own modules, not the CPU or latency it is measured on
        cmd = [
            *COLLECTOR[:1], *profile, *COLLECTOR[1:], "collect", "--mode", "ws",
            "--symbols", symbols, "--timeframes", TF.name, "--no-funding", "--series", args.kinds,
            "--heartbeat", str(HEARTBEAT), "--log-format", "json", "--data-dir", str(data_dir),
            "--since", "5m", "--rest-url", sim.rest_url, "--ws-url", sim.ws_url,
        ]  # fmt: skip
        scraper = MetricsScraper(free_port() if args.metrics else None, args.scrape_interval)
        cmd += scraper.flags()
        say(t0, f"store seeded with {args.store_rows} rows/series; starting the collector")
        started = time.monotonic()
        collector = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        footprint = Footprint(collector.pid)
        footprint.start()
        scraper.start()
        log = LineReader(collector.stderr)
        log.start()
        settled = wait_settled(sim, streams)
        startup = settled - started
        end, closes = plan_window(sim, args.seconds)
        say(t0, f"collector settled; measuring {end - time.time():.0f} s")
        ids = {"trade": inst_ids, "mark": inst_ids, "index": [i[:-5] for i in inst_ids]}
        scanned = {JOURNAL_KIND[k]: ids[k] for k in kinds if k in JOURNAL_KIND}
        scanner = FileLatency(data_dir, scanned, closes)
        scanner.start()
        window = measure(sim, collector.pid, end)
        # Let the scan of the last close and the heartbeat that reports its writes happen.
        tail = max(HEARTBEAT + 1, closes[-1][1] + SCAN_AFTER + 0.5 - time.time())
        time.sleep(tail)
        scanner.join(timeout=5)
        say(t0, "stopping the collector")
        notes.extend(scraper.finish())
        stopping = time.monotonic()
        code, exit_s, rss = terminate(collector, 30)
        footprint.stop.set()
        footprint.join(timeout=5)
        if args.keep_log:
            lines = "".join(f"{at:.3f} {line}\n" for at, line in log.lines)
            Path(f"{args.keep_log}.{rate}x").write_text(lines)
        log.join(timeout=5)
        collector = None
        if code != 0:
            notes.append(f"collector exited {code}: {log.lines[-1][1] if log.lines else ''}")
        merged = merge_report(data_dir, inst_ids)
        if merged:
            notes.append(merged)
        hb = heartbeats(log.lines, settled)
        warnings = [json.loads(x) for _, x in log.lines if '"level": "warning"' in x]
        notes.extend(f"collector warning: {w.get('message', '')[:120]}" for w in warnings[:3])
        for key in ("rate_limited", "ws_dropped", "ws_connections"):
            if window.stats[key]:
                notes.append(f"simulator {key} during the window: {window.stats[key]}")

        # -- the baseline: a bare ccxt.pro consumer --
        base: Window | None = None
        base_rss: float | None = None
        if not args.no_baseline and kinds != ["trade"]:
            # ccxt.pro has no watch of OKX's mark/index candle channels: the bare consumer
            # takes the same perpetuals' trade candles, and the check compares CPU per update.
            notes.append("baseline: the perpetuals' trade candles only (ccxt.pro has no mark/index"
                         " candle watch); CPU compared per update")  # fmt: skip
        if not args.no_baseline:
            cmd = [sys.executable, "-c", BASELINE, sim.rest_url, sim.ws_url, TF.name, symbols,
                   args.baseline]  # fmt: skip
            consumer = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            out = LineReader(consumer.stdout)
            out.start()
            out.wait_for("ready", 120)
            wait_settled(sim, args.series)
            say(t0, f"baseline settled; measuring {window.seconds:.0f} s")
            base = measure(sim, consumer.pid, time.time() + window.seconds)
            code_b, _, base_rss = terminate(consumer, 30)
            out.join(timeout=5)
            if code_b != 0 or not any(" failed 0 " in line for _, line in out.lines):
                notes.append(f"baseline exited {code_b}: {[x for _, x in out.lines][-1:]}")
    finally:
        if collector is not None:
            collector.kill()
            collector.wait()
        sim.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        say(t0, "done")

    # candle channels push every interval; open interest (oi) only when it changes, not counted
    offered = args.series * len([k for k in kinds if k != "oi"]) / interval
    return Result(
        rate=rate,
        offered=offered,
        collector=window,
        baseline=base,
        hb_p50=max((h["p50"] for h in hb if h["p50"] is not None), default=None),
        hb_p99=max((h["p99"] for h in hb if h["p99"] is not None), default=None),
        hb_rows=[h["line"] for h in hb if h["p50"] is not None],
        files={k: scanner.summary(JOURNAL_KIND[k]) for k in kinds if k in JOURNAL_KIND},
        collector_rss=rss,
        mem_startup=footprint.peak(until=settled),
        mem_running=footprint.peak(settled, stopping),
        mem_stopping=footprint.peak(stopping),
        baseline_rss=base_rss,
        collector_exit=code,
        collector_exit_s=exit_s,
        startup_s=startup,
        notes=notes,
    )


def heartbeats(lines: list[tuple[float, str]], since: float) -> list[dict[str, Any]]:
    """The heartbeats logged after `since` that report close->disk latencies."""
    out = []
    for t, line in lines:
        if t < since or '"heartbeat ' not in line:
            continue
        message = json.loads(line)["message"]
        match = HEARTBEAT_RE.search(message)
        if match is None:
            continue
        p50, p99 = match["p50"], match["p99"]
        out.append(
            {
                "p50": float(p50) if p50 else None,
                "p99": float(p99) if p99 else None,
                "line": message.removeprefix("heartbeat "),
            }
        )
    return out


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# -- the report ----------------------------------------------------------------------------------


def report(args: argparse.Namespace, results: list[Result]) -> bool:
    def row(name: str, values: list[str]) -> None:
        print(f"  {name:<42}" + "".join(f"{v:>22}" for v in values))

    def each(fn: Any) -> list[str]:
        return [fn(r) for r in results]

    def secs(x: float | None) -> str:
        return "n/a" if x is None else ("> 20 s" if x == float("inf") else f"{x:.2f} s")

    print(
        f"\nlive: {args.series} series x 1m, simulator speed 1, store seeded with "
        f"{args.store_rows} rows/series{' late in the day' if args.late_in_day else ''}, "
        f"metrics {f'scraped every {args.scrape_interval:g} s' if args.metrics else 'off'}, "
        f"windows of >= {args.seconds:g} s, {os.cpu_count()} cores"
    )
    row("", each(lambda r: f"{r.rate}x ({2 * r.rate} upd/s/series)"))
    row("updates/s offered", each(lambda r: f"{r.offered:,.0f}"))
    row("window (s)", each(lambda r: f"{r.collector.seconds:.1f}"))
    row("collector: updates/s delivered", each(lambda r: f"{r.collector.rate:,.0f}"))
    row("collector: CPU (share of a core)", each(lambda r: f"{r.collector.core:.3f}"))
    row("collector: CPU s per 1,000 updates", each(lambda r: f"{r.collector.per_1k:.4f}"))
    row("collector: close->disk p50 (heartbeat)", each(lambda r: secs(r.hb_p50)))
    row("collector: close->disk p99 (heartbeat)", each(lambda r: secs(r.hb_p99)))
    for kind in results[0].files:
        label = "files" if kind == "trade" else f"files, {kind}"
        for stat in ("min", "p50", "p99", "max"):
            row(
                f"collector: close->disk {stat} ({label})",
                each(lambda r, k=kind, q=stat: secs(getattr(r.files[k], q))),
            )
    row("collector: peak RSS (MB), whole life", each(lambda r: f"{r.collector_rss:.0f}"))
    row(
        "collector: peak RSS start/run/stop (MB)",
        each(lambda r: f"{r.mem_startup:.0f} / {r.mem_running:.0f} / {r.mem_stopping:.0f}"),
    )
    row("collector: start-up to settled (s)", each(lambda r: f"{r.startup_s:.1f}"))
    exits = each(lambda r: f"{r.collector_exit} ({r.collector_exit_s:.1f})")
    row("collector: exit code (s after SIGTERM)", exits)
    row("simulator CPU, collector window", each(lambda r: f"{r.collector.sim_core:.3f}"))
    if all(r.baseline for r in results):
        row("baseline: updates/s delivered", each(lambda r: f"{r.baseline.rate:,.0f}"))
        row("baseline: CPU (share of a core)", each(lambda r: f"{r.baseline.core:.3f}"))
        row("baseline: CPU s per 1,000 updates", each(lambda r: f"{r.baseline.per_1k:.4f}"))
        row("baseline: peak RSS (MB)", each(lambda r: f"{r.baseline_rss:.0f}"))
        row("simulator CPU, baseline window", each(lambda r: f"{r.baseline.sim_core:.3f}"))
        row("collector / baseline CPU per update", each(lambda r: f"{ratio(r):.2f}x"))

    print("\n  targets (collector):")
    ok = True
    for r in results:
        p99_s, memory_mb = (0.1, 200) if args.series <= 1000 else (0.25, 300)  # issue 13
        checks: list[tuple[str, bool | None]] = [  # None: not measured (--no-baseline)
            ("CPU <= 1.0x baseline", None if r.baseline is None else ratio(r) <= 1.0),
            (f"p99 close->disk <= {p99_s:g} s", max(r.hb_p99 or 0, *_p99s(r)) <= p99_s),
            (f"peak memory <= {memory_mb} MB", r.collector_rss <= memory_mb),
            ("keeps up (>= 97% delivered)", r.collector.rate >= 0.97 * r.offered),
            ("simulator < 0.8 core", max(r.collector.sim_core, _sim_b(r)) < 0.8),
            ("exit 0 on SIGTERM", r.collector_exit == 0),
        ]
        ok &= all(passed is not False for _, passed in checks)
        word = {True: "ok", False: "MISSED", None: "n/a"}
        marks = ", ".join(f"{name}: {word[passed]}" for name, passed in checks)
        print(f"  {r.rate}x  {marks}")
        for note in r.notes:
            print(f"      note: {note}")
        for line in r.hb_rows:
            print(f"      heartbeat: {line}")
    return ok


def _p99s(r: Result) -> list[float]:
    return [f.p99 for f in r.files.values()]


def ratio(r: Result) -> float:
    return r.collector.per_1k / r.baseline.per_1k if r.baseline else float("nan")


def _sim_b(r: Result) -> float:
    return r.baseline.sim_core if r.baseline else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1000, help="synthetic spot series [1000]")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window [60]")
    parser.add_argument("--rates", default="1,4", help="push rates, x OKX's cadence [1,4]")
    parser.add_argument(
        "--store-rows", type=int, default=10, help="candles seeded per series (0: none) [10]"
    )
    parser.add_argument(
        "--sim-rate-limit-scale", type=float, default=1.0, help="simulator's REST limits [1]"
    )
    parser.add_argument(
        "--late-in-day",
        action="store_true",
        help="start the simulator at 23:57 UTC of today (with --store-rows 1440: the worst case,"
        " full day files before midnight, then a new day)",
    )
    parser.add_argument(
        "--kinds",
        default="trade",
        help="the collector's --series: trade, mark, index, oi; with any but trade the series are"
        " perpetuals (SIMnnnn-USDT-SWAP), each kind seeded as the trade candles [trade]",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the ccxt.pro baseline")
    parser.add_argument(
        "--baseline",
        choices=("batch", "lean"),
        default="batch",
        help="the bare consumer re-arms its batch's watch after each return (batch), or, once"
        " subscribed, a watch of one series of the batch (lean: ccxt's parsing alone) [batch]",
    )
    parser.add_argument(
        "--metrics", action="store_true", help="collect with --metrics-port, scraped meanwhile"
    )
    parser.add_argument(
        "--scrape-interval", type=float, default=15.0, help="seconds between scrapes [15]"
    )
    parser.add_argument(
        "--keep-log", metavar="PATH", help="save the collector's log lines to PATH.<rate>x"
    )
    parser.add_argument(
        "--profile",
        metavar="PATH",
        help="run the collector under cProfile, stats to PATH.<rate>x (slows it: no figures)",
    )
    args = parser.parse_args()
    results = []
    for rate in (int(x) for x in args.rates.split(",")):
        print(f"running {rate}x ...", flush=True)
        results.append(run_rate(args, rate))
    return 0 if report(args, results) else 1


if __name__ == "__main__":
    sys.exit(main())
