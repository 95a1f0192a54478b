"""Benchmark one background compaction round late in a month: 16 closes of `--series` series of
1m whose month already holds 29 days (the round's closes are the last 16 minutes of the 29th).

    python benchmarks/month_round.py [--series 200] [--layout days|month]

`--layout days` (this version: the newest month in day files) or `month` (the month-only layout
before it: the current month in one month file). The partitions are written directly
(`write_atomic`, as compaction writes them), the round's closes are journaled as `collect` writes
them, and the compaction runs in a fresh process: wall, CPU, peak RSS, and the bytes it wrote
(`wchar` of /proc/self/io: every write(), fsynced or not) and the partition files it replaced.
Run it with PYTHONPATH at an older checkout's src to measure that version's compaction.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from okx_collector.models import Candle
from okx_collector.store import Store
from okx_collector.store.atomic import write_atomic
from okx_collector.store.schema import candles_table
from okx_collector.timeframes import Timeframe

M1 = Timeframe.parse("1m")
MONTH = 1_793_491_200_000  # 2026-11-01 00:00 UTC
DAY_MS = 86_400_000
DAYS = 29
ROUND = 16

CHILD = """
import json, resource, sys, time
from okx_collector.store import Store
def wchar():
    with open("/proc/self/io") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("wchar"))
store = Store(sys.argv[1])
w0 = wchar(); t0 = time.perf_counter(); c0 = time.process_time()
result = store.compact()
t1 = time.perf_counter(); c1 = time.process_time(); w1 = wchar()
print(json.dumps({"seconds": t1 - t0, "cpu": c1 - c0, "written": w1 - w0,
                  "rows": result.rows, "series": result.series,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build(root: Path, series: int, layout: str) -> list[str]:
    """29 days of every series as partitions (minus the round's closes); returns the ids."""
    ids = [f"S{i:04d}-USDT" for i in range(series)]
    n = DAYS * 1440 - ROUND
    for inst_id in ids:
        rows = [Candle(MONTH + k * M1.ms, 1.0 + k, 2.0 + k, 0.5, 1.5 + k, 10.0, 15.0, "ws")
                for k in range(n)]  # fmt: skip
        table = candles_table(inst_id, "1m", rows)
        folder = root / "candles" / inst_id / "1m"
        folder.mkdir(parents=True)
        if layout == "month":
            write_atomic(folder / "2026-11.parquet", table)
            continue
        for day in range(DAYS):
            part = table.slice(day * 1440, 1440)
            write_atomic(folder / f"2026-11-{day + 1:02d}.parquet", part)
    return ids


def files(root: Path) -> dict[Path, tuple[int, int, int]]:
    return {
        p: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
        for p in (root / "candles").rglob("*.parquet")
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=200, help="series of 1m [200]")
    parser.add_argument("--layout", choices=("days", "month"), default="days")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="okx-month-round-") as tmp:
        root = Path(tmp) / "data"
        started = time.perf_counter()
        ids = build(root, args.series, args.layout)
        store = Store(root)
        for k in range(DAYS * 1440 - ROUND, DAYS * 1440):
            row = Candle(MONTH + k * M1.ms, 1.0 + k, 2.0 + k, 0.5, 1.5 + k, 10.0, 15.0, "ws")
            store.write_candles_many([(inst_id, M1, [row]) for inst_id in ids])
        print(f"built {args.series} series x {DAYS} days ({args.layout}) and a round of {ROUND} "
              f"closes in {time.perf_counter() - started:.1f} s")  # fmt: skip
        before = files(root)
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(root)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout)
        after = files(root)
        replaced = [p for p, sig in after.items() if before.get(p) != sig]
        size = sum(after[p][2] for p in replaced)
        print(
            f"one round ({args.layout}): {r['rows']:,} rows of {r['series']} series -> "
            f"{r['seconds']:.2f} s wall, {r['cpu']:.2f} s CPU, peak RSS {r['peak_mb']:.0f} MB; "
            f"wrote {r['written'] / 1e6:.1f} MB ({len(replaced)} partition files replaced, "
            f"{size / 1e6:.1f} MB)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
