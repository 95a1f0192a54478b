"""Soak: does `collect` stay flat in memory, and exact, over many hours of candles?

    python benchmarks/soak.py [--series 200] [--speed 60] [--minutes 12] [--start 20:00]

Runs `okx-collector simulate --extra-instruments SERIES --speed SPEED` (its clock SPEED times
faster than real time, starting at `--start` UTC today, so that the run crosses midnight and the
day partitions roll over) and `okx-collector collect --mode ws` of SERIES 1m series against it,
from an empty store, for `--minutes` real minutes (= minutes x SPEED / 60 simulated hours:
12 x 60 = 12 h, 720 candles per series). Every 10 s it samples the collector's RSS
(/proc/PID/status VmRSS). At the end: SIGTERM (must exit 0), then `okx-collector status --json`
(every series complete from its first stored candle to the last closed one: no gap), and the RSS
figures: after the start-up, at each quarter, the peak, and the growth over the second half of the
run in MB per simulated hour (a least-squares slope). Exit status 1 if the collector did not exit
0, a series has a gap or is not fresh, or memory grew by more than `--max-growth` MB per simulated
hour over the second half.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from simproc import Simulator

COLLECTOR = [sys.executable, "-m", "okx_collector"]
SAMPLE_S = 10.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def start_time(hhmm: str) -> str:
    hour, minute = (int(x) for x in hhmm.split(":"))
    now = datetime.now(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return now.strftime("%Y-%m-%dT%H:%M:%S")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=200, help="synthetic 1m series [200]")
    parser.add_argument("--speed", type=float, default=60.0, help="simulator speed [60]")
    parser.add_argument("--minutes", type=float, default=12.0, help="real minutes to run [12]")
    parser.add_argument("--start", default="20:00", help="simulated start, HH:MM UTC today")
    parser.add_argument(
        "--max-growth", type=float, default=1.0, help="MB per simulated hour allowed [1]"
    )
    args = parser.parse_args()
    symbols = ",".join(f"SIM{i:04d}/USDT" for i in range(1, args.series + 1))
    sim = Simulator(
        "--extra-instruments", str(args.series), "--speed", str(args.speed),
        "--start", start_time(args.start),
    )  # fmt: skip
    data_dir = Path(tempfile.mkdtemp(prefix="okx-bench-soak-"))
    cmd = [
        *COLLECTOR, "collect", "--mode", "ws", "--symbols", symbols, "--timeframes", "1m",
        "--no-funding", "--since", "10m", "--heartbeat", "60", "--data-dir", str(data_dir),
        "--rest-url", sim.rest_url, "--ws-url", sim.ws_url, "--log-level", "WARNING",
    ]  # fmt: skip
    started = time.monotonic()
    sim_start = sim.now_ms()
    collector = subprocess.Popen(cmd)
    samples: list[tuple[float, float]] = []  # (simulated hours since start, RSS MB)
    ok = True
    code = None
    try:
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(SAMPLE_S)
            if collector.poll() is not None:
                print(f"collector exited early with {collector.returncode}")
                return 1
            hours = (sim.now_ms() - sim_start) / 3_600_000
            samples.append((hours, rss_mb(collector.pid)))
            print(f"  {hours:5.1f} h simulated  RSS {samples[-1][1]:6.1f} MB", flush=True)
        collector.send_signal(signal.SIGTERM)
        code = collector.wait(30)
        last_closed = (sim.now_ms() // 60_000 - 1) * 60_000
        status = subprocess.run(
            [*COLLECTOR, "status", "--json", "--data-dir", str(data_dir)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    finally:
        if collector.poll() is None:
            collector.kill()
        sim.stop()
    series = [r for r in json.loads(status.stdout)["series"] if r["kind"] == "candles"]
    gaps = sum(r["gap_count"] for r in series)
    # fresh: the last closed candle stored, give or take the two the SIGTERM may have cut off
    stale = [r for r in series if (r["last_ms"] or 0) < last_closed - 2 * 60_000]
    total = sum(r["rows"] for r in series)
    second_half = [p for p in samples if p[0] >= samples[-1][0] / 2] if samples else []
    growth = slope(second_half)
    quarters = [samples[max(0, len(samples) * q // 4 - 1)][1] for q in (1, 2, 3, 4)]
    hours = samples[-1][0] if samples else 0.0
    print()
    print(
        f"soak: {args.series} series x 1m, simulator speed {args.speed:g}, {args.minutes:g} real"
        f" minutes = {hours:.1f} simulated hours, {os.cpu_count()} cores"
    )
    print(f"  collector exit code             {code}")
    print(f"  rows stored                     {total:,} in {len(series)} series")
    print(f"  gaps (status)                   {gaps}")
    print(f"  series not fresh at the end     {len(stale)}")
    if not samples:
        print("  no RSS sample: run longer than 10 s")
        return 1
    print(f"  RSS first sample                {samples[0][1]:.0f} MB")
    print("  RSS at each quarter             " + " / ".join(f"{q:.0f}" for q in quarters) + " MB")
    print(f"  RSS peak (sampled)              {max(s for _, s in samples):.0f} MB")
    print(f"  RSS growth, second half         {growth:+.2f} MB per simulated hour")
    if code != 0 or gaps or stale or not series:
        ok = False
    if growth > args.max_growth:
        ok = False
    print("  result                          " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
