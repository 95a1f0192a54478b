"""Soak: does `collect` stay flat in memory, and exact, over days of candles?

    python benchmarks/soak.py [--series 100] [--speed 240] [--minutes 13] [--start 00:00]

Runs `okx-collector simulate --extra-instruments SERIES --speed SPEED` (its clock SPEED times
faster than real time, from `--start` UTC today) and `okx-collector collect --mode ws` of SERIES 1m
series against it, from an empty store, for `--minutes` real minutes (= minutes x SPEED / 60
simulated hours: 13 x 240 = 52 h, two whole UTC days, 3,120 candles per series). Every 10 s it
samples the collector's memory (its RSS, and the private pages of any child process). At the
end: SIGTERM (must exit 0), then `okx-collector status --json` (every series complete from its
first stored candle to the last closed one: no gap), and the memory figures: the first sample,
the mean and peak of each simulated UTC day, and the growth from the first whole day's mean to
the second's. "Flat" means: the second day looks like the first (a single sample's peak is
noisy; the day's mean is not). Exit status 1 if the collector did not exit 0, a series has a gap
or is not fresh, or the second day's mean exceeds the first's by more than `--max-growth` MB.
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

from procstat import memory_mb
from simproc import Simulator

COLLECTOR = [sys.executable, "-m", "okx_collector"]
SAMPLE_S = 10.0


def start_time(hhmm: str) -> str:
    hour, minute = (int(x) for x in hhmm.split(":"))
    now = datetime.now(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return now.strftime("%Y-%m-%dT%H:%M:%S")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=100, help="synthetic 1m series [100]")
    parser.add_argument("--speed", type=float, default=240.0, help="simulator speed [240]")
    parser.add_argument("--minutes", type=float, default=13.0, help="real minutes to run [13]")
    parser.add_argument("--start", default="00:00", help="simulated start, HH:MM UTC today")
    parser.add_argument(
        "--max-growth", type=float, default=5.0, help="day-2 over day-1 mean allowed, MB [5]"
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
            samples.append((hours, memory_mb(collector.pid)[0]))
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
    start_hour = int(args.start.split(":")[0]) + int(args.start.split(":")[1]) / 60
    days: dict[int, list[float]] = {}  # simulated UTC day index -> RSS samples
    for h, mb in samples:
        days.setdefault(int((start_hour + h) // 24), []).append(mb)
    whole = (
        [d for d in days if d * 24 >= start_hour and (d + 1) * 24 <= start_hour + samples[-1][0]]
        if samples
        else []
    )
    mean = {day: sum(values) / len(values) for day, values in days.items()}
    growth = mean[whole[1]] - mean[whole[0]] if len(whole) >= 2 else None
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
    for day, values in sorted(days.items()):
        tag = "whole day" if day in whole else "part of a day"
        label = f"RSS mean / peak, day {day - min(days) + 1}"
        print(f"  {label:<32}{mean[day]:.0f} / {max(values):.0f} MB ({tag})")
    if growth is None:
        print("  RSS growth                      n/a: run two whole simulated days (--minutes)")
    else:
        print(f"  RSS growth, day 2 over day 1    {growth:+.1f} MB (means)")
    if code != 0 or gaps or stale or not series:
        ok = False
    if growth is not None and growth > args.max_growth:
        ok = False
    print("  result                          " + ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
