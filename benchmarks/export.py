"""Benchmark `export_qlib`: a full export and an incremental export of one new day.

    python benchmarks/export.py [--cache-dir /tmp/okx-collector-bench-export] [--scenario 1m,15m]
        [--verify] [--dump-bin PATH] [--journal-minutes N]

Scenarios (built once through the Store and cached under --cache-dir; a year ending 2025-12-30):
  1m   20 instruments (10 spot + their 10 perpetuals, with funding) x 1 year of 1m candles, ~10 M
  15m  50 instruments (25 spot + 25 perpetuals) x 1 year of 15m candles, ~1.75 M
  1m-derived  10 perpetuals x 1 year of 1m with funding, mark-price candles, index candles and
       open interest stored (~5.2 M bars of each kind): 9 more qlib fields per instrument
Every series has gaps: ~0.5 % random missing candles and three 2-hour outages. The stores are
compacted as a collector leaves them: 11 month files and, for the newest month, 30 day files per
series (so a full 15m export opens 2,050 files, 1,500 of them December's days).

Each run copies the cached store (so the new day can be added), runs a full export into an empty
directory, writes one more day (2025-12-31) to every series, and runs an incremental export into
the same directory. Each export runs in a fresh child interpreter; its peak RSS is read with
`getrusage(RUSAGE_CHILDREN)` by an intermediate process that has that one child only, so neither
building the store nor the other export counts. `--verify` also checks that the incremental
directory is byte-identical to a fresh full export. `--journal-minutes N` writes the new day N
minutes at a time per series and kind and leaves it in the journal (15: 3,850 journal files for
`1m-derived`), so that the incremental export reads the journal as well as the partitions.

`--dump-bin PATH` also runs qlib's own `scripts/dump_bin.py dump_all` (from qlib's repository: it
is not in the pip package; it needs the `qlib` extra plus fire, loguru and tqdm) on the same
candles, written first as one CSV per instrument (not timed), and prints its wall time, the peak
RSS of its largest process, and the ratio to our full export.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from okx_collector.models import Candle, FundingRate, OpenInterest, PriceCandle
from okx_collector.qlib_export import export_qlib
from okx_collector.qlib_export.arrays import CANDLE_FIELDS as FIELDS
from okx_collector.store import Store
from okx_collector.timeframes import DAY_MS, HOUR_MS, Timeframe

START = 1_735_689_600_000  # 2025-01-01 00:00 UTC
DAYS = 364  # the cached store ends 2025-12-30; the incremental export adds 2025-12-31
BASES = [
    "BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "DOT", "LINK", "LTC", "AVAX",
    "TRX", "BCH", "UNI", "ATOM", "ETC", "FIL", "APT", "ARB", "OP", "NEAR",
    "SUI", "TON", "PEPE", "SHIB", "AAVE",
]  # fmt: skip
# name -> (timeframe, spot/perp pairs, or perpetuals alone with their derived series)
SCENARIOS = {"1m": ("1m", 10), "15m": ("15m", 25), "1m-derived": ("1m", 10)}
DERIVED = {"1m-derived"}


def instruments(name: str) -> list[str]:
    pairs = SCENARIOS[name][1]
    if name in DERIVED:
        return [f"{b}-USDT-SWAP" for b in BASES[:pairs]]
    return [f"{b}-USDT{s}" for b in BASES[:pairs] for s in ("", "-SWAP")]


def candles(inst: str, tf: Timeframe, start: int, end: int) -> list[Candle]:
    """A seeded random walk over [start, end) with gaps."""
    seed = zlib.crc32(f"{inst} {tf.name} {start}".encode())
    rng = np.random.default_rng(seed)
    ts = np.arange(start, end, tf.ms, dtype=np.int64)
    keep = rng.random(ts.size) >= 0.005
    for _ in range(3 if end - start > 7 * DAY_MS else 0):
        at = int(rng.integers(0, ts.size))
        keep[at : at + int(2 * HOUR_MS // tf.ms)] = False
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, ts.size)))
    opens = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(opens, close) * (1 + np.abs(rng.normal(0, 5e-4, ts.size)))
    low = np.minimum(opens, close) * (1 - np.abs(rng.normal(0, 5e-4, ts.size)))
    vol = rng.lognormal(2, 1, ts.size) * (rng.random(ts.size) >= 0.01)
    quote = vol * (opens + close) / 2
    rows = zip(*(a[keep].tolist() for a in (ts, opens, high, low, close, vol, quote)), strict=True)
    return [Candle(t, o, h, lo, c, v, q, "backfill") for t, o, h, lo, c, v, q in rows]


def write_derived(store: Store, inst: str, tf: Timeframe, bars: list[Candle]) -> None:
    """Mark and index candles near the trade candles, open interest at their closes."""
    rng = np.random.default_rng(len(bars) + zlib.crc32(inst.encode()))
    for price, sid, spread in (("mark", inst, 2e-4), ("index", inst.removesuffix("-SWAP"), 4e-4)):
        k = 1 + rng.normal(0, spread, len(bars))
        rows = [
            PriceCandle(c.ts, c.open * f, c.high * f, c.low * f, c.close * f, "backfill")
            for c, f in zip(bars, k.tolist(), strict=True)
        ]
        store.write_price_candles(price, sid, tf, rows)  # type: ignore[arg-type]
    oi = 1e6 + np.cumsum(rng.normal(0, 100, len(bars)))
    store.write_open_interest(
        inst,
        tf,
        [
            OpenInterest(c.ts + tf.ms, v, v / 100, v * c.close, "backfill")
            for c, v in zip(bars, oi.tolist(), strict=True)
        ],
    )


def write_range(
    store: Store,
    insts: list[str],
    tf: Timeframe,
    start: int,
    end: int,
    derived: bool = False,
    chunk_ms: int | None = None,
) -> int:
    """Write [start, end) of every series a month (or `chunk_ms`) at a time, and funding for the
    perpetuals (and, with `derived`, their mark and index candles and open interest)."""
    total = 0
    for inst in insts:
        lo = start
        while lo < end:
            hi = min(end, _next_month(lo), lo + chunk_ms if chunk_ms else end)
            bars = candles(inst, tf, lo, hi)
            total += store.write_candles(inst, tf, bars)
            if derived:
                write_derived(store, inst, tf, bars)
            lo = hi
        if inst.endswith("-SWAP"):
            times = range(start + (-start) % (8 * HOUR_MS), end, 8 * HOUR_MS)
            rng = np.random.default_rng(len(inst))
            store.write_funding(
                inst, [FundingRate(t, float(rng.normal(0, 1e-4)), 0.0, "backfill") for t in times]
            )
    return total


def _next_month(ts: int) -> int:
    month = np.datetime64(ts, "ms").astype("datetime64[M]") + 1
    return int(month.astype("datetime64[ms]").astype(np.int64))


def build(cache: Path, name: str) -> Path:
    """The cached base store of a scenario (built on first use)."""
    tf_name, _ = SCENARIOS[name]
    root = cache / f"store-{name}"
    done = root / ".complete-v3"  # v3: compacted, month files (an older store is rebuilt)
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    t = time.perf_counter()
    store = Store(root)
    tf = Timeframe.parse(tf_name)
    rows = write_range(store, instruments(name), tf, START, START + DAYS * DAY_MS, name in DERIVED)
    store.compact()  # as a stopped backfill leaves it: partitions only
    done.write_text(str(rows))
    print(f"built {name}: {rows} candles in {time.perf_counter() - t:.0f} s -> {root}", flush=True)
    return root


# -- child processes ---------------------------------------------------------------------------


def child_export(store: str, out: str, tf: str) -> None:
    """Run one export in this fresh interpreter; print its report as JSON."""
    t = time.perf_counter()
    report = export_qlib(Store(store), Path(out), Timeframe.parse(tf))
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - t,
                "rows": report.rows,
                "slots": report.slots_written,
                "instruments": len(report.instruments),
                "appended": len(report.appended),
                "rewritten": len(report.rewritten),
            }
        )
    )


def write_csvs(store: Path, tf: str, csv_dir: Path) -> None:
    """The store's candles as dump_bin.py reads them: one CSV per instrument (date, fields)."""
    import pandas as pd

    csv_dir.mkdir(parents=True, exist_ok=True)
    st = Store(store)
    for inst, name in st.list_candle_series():
        if name != tf:
            continue
        table = st.read_candles(inst, Timeframe.parse(tf), columns=["ts", *FIELDS])
        frame = table.to_pandas()
        frame.insert(0, "date", pd.to_datetime(frame.pop("ts"), unit="ms"))
        frame.to_csv(csv_dir / f"{inst}.csv", index=False, date_format="%Y-%m-%d %H:%M:%S")


def child_run(args: list[str]) -> None:
    """Run a command as this process's only child; print its wall time and peak RSS."""
    t = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(proc.stderr[-4000:])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024}))


def dump_bin(script: Path, store: Path, tf: str, work: Path) -> dict[str, float]:
    csv_dir, out = work / "csv", work / "dump_bin"
    shutil.rmtree(csv_dir, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    write_csvs(store, tf, csv_dir)
    freq = Timeframe.parse(tf).qlib_freq
    cmd = [sys.executable, str(script), "dump_all", f"--data_path={csv_dir}",
           f"--qlib_dir={out}", f"--freq={freq}", "--date_field_name=date",
           "--symbol_field_name=symbol", f"--max_workers={os.cpu_count() or 1}"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, __file__, "_run", *cmd], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(proc.stderr[-4000:] or proc.stdout[-4000:])
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def child_measure(args: list[str]) -> None:
    """Run `child_export` as this process's only child and add its peak RSS."""
    proc = subprocess.run(
        [sys.executable, __file__, "_export", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(proc.stderr[-4000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result["peak_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    result["cpu"] = usage.ru_utime + usage.ru_stime  # includes the interpreter's start-up
    print(json.dumps(result))


def measure(store: Path, out: Path, tf: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "_measure", str(store), str(out), tf],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(proc.stderr[-4000:] or proc.stdout[-4000:])
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(
        p.relative_to(a) for p in a.rglob("*") if p.is_file() and not p.name.startswith(".")
    )
    files_b = sorted(
        p.relative_to(b) for p in b.rglob("*") if p.is_file() and not p.name.startswith(".")
    )
    return files_a == files_b and all(filecmp.cmp(a / f, b / f, shallow=False) for f in files_a)


def run(
    cache: Path, name: str, verify: bool, script: Path | None, journal_minutes: int = 0
) -> dict[str, object]:
    tf_name, _ = SCENARIOS[name]
    base = build(cache, name)
    work = cache / f"run-{name}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(base, work / "store")  # copy2 keeps the partitions' mtimes
    os.sync()  # so that writing back the copy does not slow the export down
    out = work / "qlib"
    full = measure(work / "store", out, tf_name)
    day = START + DAYS * DAY_MS
    store = Store(work / "store")
    tf = Timeframe.parse(tf_name)
    chunk = journal_minutes * 60_000 or None
    added = write_range(store, instruments(name), tf, day, day + DAY_MS, name in DERIVED, chunk)
    if not journal_minutes:
        store.compact()  # as the collector's background compaction does
    os.sync()
    inc = measure(work / "store", out, tf_name)
    row: dict[str, object] = {"scenario": name, "full": full, "inc": inc, "added": added}
    row["journal_files"] = store.journal_pending()
    if script is not None:
        row["dump_bin"] = dump_bin(script, base, tf_name, work)
    if verify:
        fresh = work / "fresh"
        measure(work / "store", fresh, tf_name)
        row["identical"] = same_tree(out, fresh)
    return row


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_export":
        child_export(*sys.argv[2:5])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_run":
        child_run(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_measure":
        child_measure(sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/okx-collector-bench-export"))
    parser.add_argument(
        "--scenario", default="1m,15m", help="comma list of: " + ", ".join(SCENARIOS)
    )
    parser.add_argument("--verify", action="store_true", help="compare with a fresh full export")
    parser.add_argument("--dump-bin", type=Path, help="qlib's scripts/dump_bin.py, to compare")
    parser.add_argument(
        "--journal-minutes",
        type=int,
        default=0,
        metavar="N",
        help="write the new day N minutes at a time per series and kind and leave it in the "
        "journal (not compacted), as a collector's store before its compaction ran",
    )
    args = parser.parse_args()
    rows = [
        run(args.cache_dir, s, args.verify, args.dump_bin, args.journal_minutes)
        for s in args.scenario.split(",")
    ]
    head = (
        f"{'scenario':<9}{'instr':>6}{'candles':>12}{'export':>13}"
        f"{'seconds':>9}{'rows/s':>12}{'peak MB':>9}{'CPU s':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        full, inc = r["full"], r["inc"]
        assert isinstance(full, dict) and isinstance(inc, dict)
        for label, m, n in (("full", full, full["rows"]), ("+1 day", inc, r["added"])):
            assert isinstance(n, int | float)
            print(
                f"{r['scenario']:<9}{int(full['instruments']):>6}{int(full['rows']):>12}{label:>13}"
                f"{m['seconds']:>9.2f}{n / m['seconds']:>12,.0f}{m['peak_mb']:>9.0f}"
                f"{m['cpu']:>8.1f}"
            )
        if "dump_bin" in r:
            d = r["dump_bin"]
            assert isinstance(d, dict)
            print(
                f"{'':<9}qlib dump_bin.py dump_all: {d['seconds']:.1f} s, {d['peak_mb']:.0f} MB "
                f"peak (largest process): {d['seconds'] / full['seconds']:.0f}x our full export"
            )
        if r["journal_files"]:
            print(f"{'':<9}+1 day exported with {r['journal_files']:,} journal files pending")
        if "identical" in r:
            print(f"{'':<9}incremental == fresh full export, byte for byte: {r['identical']}")
    print("seconds: export_qlib's wall time in the child; rows/s: candles exported per second")
    print("(+1 day: the new day's candles); CPU s: the child's user+system time, start-up included")


if __name__ == "__main__":
    main()
