"""Benchmark the backfill against the simulator at OKX's documented rate limits.

    python benchmarks/backfill.py [--days 10] [--timeframe 1m] [--symbols BTC/USDT,...] [--runs 1]

Starts `okx-collector simulate --rate-limit-scale 1` in its own process, then runs
`run_backfill_async` in this process (the collector's pacing at its default scale, 1) over exactly
[until - days, until), `until` being the simulator's current minute, into an empty temporary data
dir, so that every series must end up with exactly days x 1440 1m candles (checked). Only the
backfill is timed (the `BackfillReport`'s seconds: planning, every request, every write).

Request counts come from the simulator's `/_sim/stats` (before and after); a child process polls
that route every 20 ms to time the history-candles requests as the server saw them. OKX allows 20
history-candles requests in any 2 s (sliding), so N requests need at least 2 s x floor((N-1)/20)
from the first to the last: the first window's burst of 20 comes free, then 20 more every 2 s.
"Of the ceiling" is that minimum over the measured first-to-last span, and "steady req/s" is
10 req/s times it (exactly 10.0 for a client at the ceiling, whatever N). A request refused by the
simulator (HTTP 429, `rate_limited`), or a store that is not exactly the expected rows, fails the
run (exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from simproc import Simulator

from okx_collector.backfill import run_backfill_async
from okx_collector.backfill.progress import SilentProgress
from okx_collector.config import DEFAULT_SYMBOLS, Settings
from okx_collector.store import Store
from okx_collector.timeframes import DAY_MS, Timeframe

HISTORY_ROUTE = "market/history-candles"
OKX_WINDOW_S = 2.0  # OKX: 20 history-candles requests per 2 s per IP (OKX.md §4.1)
OKX_WINDOW_REQUESTS = 20
POLL_S = 0.02


POLLER = """
import http.client, json, sys, time
host, port, route, every = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
conn = http.client.HTTPConnection(host, port, timeout=10)
while True:
    conn.request("GET", "/_sim/stats")
    count = json.loads(conn.getresponse().read())["rest_by_route"].get(route, 0)
    print(time.monotonic(), count, flush=True)
    time.sleep(every)
"""


class RoutePoller:
    """A child process sampling (monotonic time, requests served on a route) every POLL_S s.

    A process of its own, so that polling takes no time from the backfill's event loop.
    """

    def __init__(self, sim: Simulator, route: str) -> None:
        url = urlsplit(sim.rest_url)
        cmd = [sys.executable, "-c", POLLER, url.hostname or "", str(url.port), route, str(POLL_S)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # polling has started
        self.samples: list[tuple[float, int]] = []

    def stop(self) -> None:
        time.sleep(3 * POLL_S)
        self.proc.terminate()
        out, _ = self.proc.communicate()
        for line in out.splitlines():
            t, n = line.split()
            self.samples.append((float(t), int(n)))

    def when(self, count: int) -> float:
        """Estimated time the route's total first reached `count` (mid-way between samples)."""
        previous = self.samples[0][0]
        for t, n in self.samples:
            if n >= count:
                return (previous + t) / 2
            previous = t
        raise ValueError(f"the route never reached {count} requests")


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    changed = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(after) | set(before))}
    return {k: v for k, v in changed.items() if v}


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def check_store(data_dir: Path, tf: Timeframe, since: int, until: int, series: int) -> list[str]:
    """Every series holds exactly the candle opens of [since, until): problems, if any."""
    store = Store(data_dir)
    expected = list(tf.opens(tf.ceil(since), tf.ceil(until)))
    problems = []
    stored = [inst for inst, name in store.list_candle_series() if name == tf.name]
    if len(stored) != series:
        problems.append(f"{len(stored)} series stored, expected {series}")
    for inst_id in stored:
        ts = store.candle_timestamps(inst_id, tf).tolist()
        if ts != expected:
            problems.append(f"{inst_id}: {len(ts)} rows, not the {len(expected)} expected")
    return problems


def run_once(symbols: tuple[str, ...], tf: Timeframe, days: float) -> tuple[bool, list[str]]:
    """One backfill into an empty store against a fresh simulator: (ok, result lines)."""
    sim = Simulator("--rate-limit-scale", "1")
    data_dir = Path(tempfile.mkdtemp(prefix="okx-bench-backfill-"))
    try:
        now = int(sim.get("/_sim/clock")["now_ms"])
        until = now - now % 60_000  # whole minutes (ISO); the current minute has not closed
        since = until - int(days * DAY_MS)
        settings = Settings(
            data_dir=data_dir,
            symbols=symbols,
            timeframes=(tf,),
            funding=False,
            since=iso(since),
            until=iso(until),
            rest_url=sim.rest_url,
            ws_url=sim.ws_url,
        )
        before = sim.get("/_sim/stats")
        poller = RoutePoller(sim, HISTORY_ROUTE)
        try:
            report = asyncio.run(run_backfill_async(settings, progress=SilentProgress()))
        finally:
            poller.stop()
        after = sim.get("/_sim/stats")
        problems = check_store(data_dir, tf, since, until, len(symbols))
    finally:
        sim.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    by_route = delta(after["rest_by_route"], before["rest_by_route"])
    refused = after["rate_limited"] - before["rate_limited"]
    sent = by_route.get(HISTORY_ROUTE, 0)
    served = sent - refused  # refused requests do not count in OKX's window
    base = poller.samples[0][1]
    span = poller.when(base + sent) - poller.when(base + 1)
    fastest = OKX_WINDOW_S * ((served - 1) // OKX_WINDOW_REQUESTS)
    share = fastest / span
    ceiling = OKX_WINDOW_REQUESTS / OKX_WINDOW_S
    expected = len(symbols) * tf.count(tf.ceil(since), tf.ceil(until))
    rows = [
        ("range", f"[{iso(since)}, {iso(until)}) UTC"),
        ("candles", f"{report.candles:,} (written {report.written:,}, expected {expected:,})"),
        ("seconds", f"{report.seconds:.2f}"),
        ("candles/s", f"{report.candles / report.seconds:,.0f}"),
        ("requests", f"{sum(by_route.values())} {json.dumps(by_route)}"),
        ("history-candles", f"{sent} requests, first to last in {span:.2f} s"),
        ("  mean req/s", f"{(sent - 1) / span:.2f} (counting the first window's free burst)"),
        ("  steady req/s", f"{ceiling * share:.2f} (OKX's ceiling: {ceiling:.0f} req/s)"),
        ("  of the ceiling", f"{share:.1%} (OKX allows these {served} in {fastest:.0f} s at best)"),
        ("refused (429)", f"{refused}"),
        ("retries", f"{report.retries}"),
        ("store check", "ok" if not problems else "; ".join(problems)),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"  {key:<{width}}  {value}" for key, value in rows]
    ok = refused == 0 and not problems and report.written == expected
    return ok, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=10.0, help="history length [10]")
    parser.add_argument("--timeframe", default="1m", help="[1m]")
    parser.add_argument("--symbols", default=",".join(DEFAULT_SYMBOLS), help="comma list")
    parser.add_argument("--runs", type=int, default=1, help="repeat, a fresh simulator each [1]")
    args = parser.parse_args()
    tf = Timeframe.parse(args.timeframe)
    symbols = tuple(s.strip() for s in args.symbols.split(",") if s.strip())
    print(
        f"backfill: {len(symbols)} symbols x {tf.name}, {args.days:g} days, empty store, "
        f"simulator in its own process at rate-limit-scale 1; {os.cpu_count()} cores"
    )
    failed = 0
    for run in range(1, args.runs + 1):
        ok, lines = run_once(symbols, tf, args.days)
        print(f"run {run}: {'ok' if ok else 'FAILED (requests refused or rows missing)'}")
        print("\n".join(lines), flush=True)
        failed += not ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
