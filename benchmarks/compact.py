"""Benchmark compaction: a day of 1,000 series of 1m, journaled as a live job writes it.

    python benchmarks/compact.py [--series 1000] [--closes 1440] [--round 16]

Builds a journal of `--closes` live closes (one journal file per close holding a candle of every
series, as `collect` writes them), then compacts it in a fresh process, measuring wall time, CPU
and peak RSS (the process's ru_maxrss: what the compaction adds to a collector is that minus the
interpreter and its imports, also printed). Then the background case: a journal of `--round`
closes merged into partitions that already hold the rest of the day, which is what one round of
`collect`'s background compactor costs. With `--closes 2 --round 2` that second line is
`collect`'s clean stop (1-2 closes drained into day files holding the rest of the day).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from okx_collector.models import Candle
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe

M1 = Timeframe.parse("1m")
DAY = 1_795_219_200_000  # 2026-11-21 00:00 UTC

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter(); c0 = time.process_time()
from okx_collector.store import Store
store = Store(sys.argv[1])
imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t1 = time.perf_counter(); c1 = time.process_time()
result = store.compact()
t2 = time.perf_counter(); c2 = time.process_time()
print(json.dumps({"seconds": t2 - t1, "cpu": c2 - c1, "files": result.files, "rows": result.rows,
                  "series": result.series, "imported_mb": imported,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "left": store.journal_pending()}))
"""


def build(root: Path, series: int, first: int, closes: int) -> float:
    """Journal `closes` live closes of every series, from close number `first`; seconds taken."""
    store = Store(root)
    ids = [f"S{i:04d}-USDT" for i in range(series)]
    started = time.perf_counter()
    for k in range(first, first + closes):
        ts = DAY + k * M1.ms
        row = Candle(ts, 1.0 + k, 2.0 + k, 0.5, 1.5 + k, 10.0, 15.0, "ws")
        store.write_candles_many([(inst_id, M1, [row]) for inst_id in ids])
    return time.perf_counter() - started


def compact(root: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(root)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(out.stdout))


def show(what: str, r: dict[str, float]) -> None:
    print(
        f"{what}: {r['files']:.0f} journal files, {r['rows']:,.0f} rows, {r['series']:.0f} series "
        f"-> {r['seconds']:.2f} s wall, {r['cpu']:.2f} s CPU, peak RSS {r['peak_mb']:.0f} MB "
        f"(after imports {r['imported_mb']:.0f} MB: +{r['peak_mb'] - r['imported_mb']:.0f} MB); "
        f"{r['left']:.0f} files left"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1000, help="series of 1m [1000]")
    parser.add_argument("--closes", type=int, default=1440, help="closes journaled [1440: a day]")
    parser.add_argument("--round", type=int, default=16, help="closes of a background round [16]")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="okx-compact-") as tmp:
        root = Path(tmp) / "data"
        took = build(root, args.series, 0, args.closes)
        print(f"journaled {args.closes} closes of {args.series} series in {took:.1f} s "
              f"({took / args.closes * 1000:.1f} ms per close)")  # fmt: skip
        show("a day at once", compact(root))
        # The background case: the day's partitions exist; a round merges `--round` closes.
        shutil.rmtree(root / "journal")
        build(root, args.series, args.closes, args.round)
        show("a background round", compact(root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
