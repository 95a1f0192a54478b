"""Benchmark the exchange layer's mark, index and open-interest history against OKX's limits.

    python benchmarks/derived.py [--days 2] [--symbols BTC,ETH,ADA,DOT,LINK]
    python benchmarks/derived.py --backfill [--days 10]   # the backfill command, trade+mark+index

With `--backfill` it runs the `backfill` command itself (`run_backfill_async`, `--series
trade,mark,index`, 1m, into a temporary data dir) and reports each of the six candle endpoints
(recent and history: trade, mark, index) the same way, then checks the store against the model.

Starts `okx-collector simulate --rate-limit-scale 1` in its own process, then fetches, in this
process and all at once, for each perpetual: its 1m mark-price candles and its index's 1m candles
over the history endpoints, its last-trade 1m candles over history-candles, and its 5m open-interest
history (the latest 1,440 entries), through `OkxExchange` / `OkxDerived` at the collector's default
pacing (scale 1). Every value is checked against the simulator's pure model built here with the
same seed (so a page served wrong fails the run).

A thread polls `/_sim/stats` every 20 ms to time each endpoint's first and last request as the
server saw them. An endpoint allowing L requests per sliding 2 s needs at least
2 s x floor((N - 1) / L) for N requests (the first window's burst is free); "of the ceiling" is
that minimum over the measured span. Per-instId endpoints (open-interest-history) are reported for
all instruments together, against 5 x their limit. A refused request (HTTP 429) or a wrong value
fails the run (exit status 1).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from typing import Any

from simproc import Simulator as SimProcess

from okx_collector.exchange import OkxExchange
from okx_collector.exchange_derived import OkxDerived
from okx_collector.pacing import OKX_LIMITS
from okx_collector.simulator import DerivedMarket, Market
from okx_collector.timeframes import DAY_MS, Timeframe

SEED = 1
POLL_S = 0.02
TF1 = Timeframe.parse("1m")
TF5 = Timeframe.parse("5m")
ROUTES = {
    "history-mark-price-candles": "market/history-mark-price-candles",
    "history-index-candles": "market/history-index-candles",
    "history-candles": "market/history-candles",
    "open-interest-history": "rubik/stat/contracts/open-interest-history",
}


class StatsPoller(threading.Thread):
    """Records (monotonic time, requests by route) every POLL_S until stopped."""

    def __init__(self, sim: SimProcess) -> None:
        super().__init__(daemon=True)
        self.sim, self.samples = sim, []  # type: ignore[var-annotated]
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.samples.append((time.monotonic(), dict(self.sim.stats()["rest_by_route"])))
            time.sleep(POLL_S)

    def span(self, route: str, before: int) -> tuple[int, float]:
        """(requests, seconds from the first to the last as the server counted them)."""
        first = last = None
        total = before
        for t, counts in self.samples:
            n = counts.get(route, 0)
            if n > before and first is None:
                first = t
            if n > total:
                total, last = n, t
        if first is None or last is None:
            return 0, 0.0
        return total - before, last - first


def print_endpoints(
    poller: StatsPoller,
    before: dict[str, Any],
    routes: dict[str, str],
    began: float,
    per_inst: dict[str, int] | None = None,
) -> None:
    """One row per endpoint: requests, when its first one came (s after `began`), the span from
    first to last, the limit per 2 s (times the instruments for the per-instId endpoints in
    `per_inst`) and the share of the ceiling that span reached."""
    print(
        f"{'endpoint':<28}{'requests':>9}{'start s':>8}{'span s':>8}{'limit/2s':>9}"
        f"{'of ceiling':>11}"
    )
    for key, route in routes.items():
        already = before["rest_by_route"].get(route, 0)
        n, span = poller.span(route, already)
        first = next((t for t, c in poller.samples if c.get(route, 0) > already), began)
        limit = OKX_LIMITS[key][0] * (per_inst or {}).get(key, 1)
        minimum = 2.0 * ((n - 1) // limit)
        share = f"{minimum / span:.1%}" if span > 0 and minimum > 0 else "burst"
        print(f"{key:<28}{n:>9}{max(first - began, 0.0):>8.2f}{span:>8.2f}{limit:>9}{share:>11}")


async def run(days: int, bases: list[str]) -> int:
    sim = SimProcess("--rate-limit-scale", "1", "--seed", str(SEED))
    poller = StatsPoller(sim)
    failures: list[str] = []
    try:
        ex = OkxExchange(sim.rest_url, sim.ws_url)
        await ex.load_markets()
        derived = OkxDerived(ex)
        oracle = DerivedMarket(Market(SEED))
        market = oracle.market
        insts = ex.resolve([f"{b}/USDT:USDT" for b in bases]).instruments
        until = TF1.floor(sim.now_ms())
        start = until - days * DAY_MS
        before = sim.stats()
        poller.start()
        began = time.monotonic()

        async def marks(kind: str) -> None:
            for inst in insts:
                got = await derived.fetch_price_candles(
                    kind,  # type: ignore[arg-type]
                    inst,
                    TF1,
                    start,
                    until,
                    recent=False,
                )
                rows = [tuple(r.candle[:5]) for r in got]
                want = (
                    oracle.mark_candles(inst.inst_id, "1m", start, until)
                    if kind == "mark"
                    else oracle.index_candles(derived.index_id(inst), "1m", start, until)
                )
                if rows != [tuple(w) for w in want]:
                    failures.append(f"{kind} {inst.inst_id}: {len(rows)} rows, not as served")

        async def trades() -> None:
            for inst in insts:
                got = []
                for page in range(start, until, 300 * TF1.ms):
                    got += await ex.fetch_candles(
                        inst, TF1, page, min(until, page + 300 * TF1.ms), recent=False,
                        source="backfill",
                    )  # fmt: skip
                rows = [tuple(r.candle[:7]) for r in got]
                want = [tuple(c) for c in market.candles(inst.inst_id, "1m", start, until)]
                if rows != want:
                    failures.append(f"trade {inst.inst_id}: {len(rows)} rows, not as served")

        async def interest(inst: Any) -> None:
            now = await asyncio.to_thread(sim.now_ms)
            got = await derived.fetch_open_interest_history(inst, TF5, 0, now + 1)
            rows = [tuple(r[:4]) for r in got]
            # The latest 1,440 as the server's clock moved during the paging: 1,441 if a period
            # began meanwhile.
            want = oracle.open_interest_history(inst.inst_id, "5m", rows[0][0], rows[-1][0] + 1)
            if len(rows) not in (1440, 1441) or rows != want:
                failures.append(f"open interest {inst.inst_id}: {len(rows)} entries, not as served")

        await asyncio.gather(marks("mark"), marks("index"), trades(), *(interest(i) for i in insts))
        elapsed = time.monotonic() - began
        await ex.close()
        await asyncio.sleep(3 * POLL_S)  # the poller sees the last requests
        poller.stop_event.set()
        poller.join()
        after = sim.stats()
    finally:
        poller.stop_event.set()
        sim.stop()
    refused = after["rate_limited"] - before["rate_limited"]
    candles = 3 * len(insts) * days * 1440
    print(f"{candles:,} candles (mark, index, trade) + {1440 * len(insts):,} open-interest entries"
          f" for {len(insts)} perpetuals x {days} days of 1m in {elapsed:.1f} s")  # fmt: skip
    print_endpoints(poller, before, ROUTES, began, per_inst={"open-interest-history": len(insts)})
    print(f"refused (HTTP 429): {refused}; values checked against the model: "
          f"{'ok' if not failures else 'FAILED'}")  # fmt: skip
    for failure in failures:
        print("  " + failure)
    return 1 if failures or refused else 0


BACKFILL_ROUTES = {
    key: "market/" + key
    for key in (
        "candles",
        "history-candles",
        "mark-price-candles",
        "history-mark-price-candles",
        "index-candles",
        "history-index-candles",
    )
}


async def run_backfill(days: int, bases: list[str]) -> int:
    """The backfill command with --series trade,mark,index against a simulator process."""
    import tempfile
    from pathlib import Path

    from okx_collector.backfill import run_backfill_async
    from okx_collector.backfill.progress import SilentProgress
    from okx_collector.config import build_settings
    from okx_collector.store import Store

    sim = SimProcess("--rate-limit-scale", "1", "--seed", str(SEED))
    poller = StatsPoller(sim)
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            settings = build_settings(
                {
                    "data_dir": str(Path(tmp) / "data"), "rest_url": sim.rest_url,
                    "ws_url": sim.ws_url, "symbols": ",".join(f"{b}/USDT:USDT" for b in bases),
                    "timeframes": "1m", "since": f"{days}d", "series": "trade,mark,index",
                    "funding": False,
                },
                env={},
            )  # fmt: skip
            before = sim.stats()
            started_ms = sim.now_ms()  # the backfill's `now`: its newest bar closed before it
            poller.start()
            began = time.monotonic()
            report = await run_backfill_async(settings, progress=SilentProgress())
            elapsed = time.monotonic() - began
            await asyncio.sleep(3 * POLL_S)
            poller.stop_event.set()
            poller.join()
            after = sim.stats()
        finally:
            poller.stop_event.set()
            sim.stop()
        oracle = DerivedMarket(Market(SEED))
        store = Store(settings.data_dir)
        checked = 0
        for base in bases:
            perp, index = f"{base}-USDT-SWAP", f"{base}-USDT"
            for kind, sid in (("mark", perp), ("index", index)):
                table = store.read_price_candles(kind, sid, TF1)  # type: ignore[arg-type]
                cols = [table.column(c).to_pylist() for c in ("ts", "open", "high", "low", "close")]
                rows = list(zip(*cols, strict=True))
                helper = oracle.mark_candles if kind == "mark" else oracle.index_candles
                want = [tuple(w) for w in helper(sid, "1m", rows[0][0], rows[-1][0] + TF1.ms)]
                if rows != want:
                    failures.append(f"{kind} {sid}: {len(rows)} rows, not as served")
                if rows[-1][0] < TF1.floor(started_ms) - 2 * TF1.ms or len(rows) < days * 1440 - 2:
                    failures.append(f"{kind} {sid}: {len(rows)} rows up to {rows[-1][0]}: short")
                checked += len(rows)
    assert report.derived is not None
    refused = after["rate_limited"] - before["rate_limited"]
    print(
        f"backfill --series trade,mark,index: {len(bases)} perpetuals x {days} days of 1m: "
        f"{report.written:,} trade, {report.derived.rows['mark']:,} mark, "
        f"{report.derived.rows['index']:,} index rows in {elapsed:.1f} s"
    )
    print_endpoints(poller, before, BACKFILL_ROUTES, began)
    print(f"refused (HTTP 429): {refused}; {checked:,} mark/index values checked against the "
          f"model: {'ok' if not failures else 'FAILED'}")  # fmt: skip
    for failure in failures:
        print("  " + failure)
    return 1 if failures or refused else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--symbols", default="BTC,ETH,ADA,DOT,LINK", help="base currencies")
    parser.add_argument("--backfill", action="store_true", help="run the backfill command")
    args = parser.parse_args()
    bases = [b.strip().upper() for b in args.symbols.split(",")]
    if args.backfill:
        sys.exit(asyncio.run(run_backfill(args.days, bases)))
    sys.exit(asyncio.run(run(args.days, bases)))


if __name__ == "__main__":
    main()
