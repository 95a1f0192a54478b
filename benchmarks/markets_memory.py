"""Memory of OKX's instrument list in the collector's ccxt client: loaded, then reloaded.

    python benchmarks/markets_memory.py [--instruments 1000] [--reloads 3]

Starts the simulator with `--instruments` extra spot and perpetual pairs (1,000: 2,010 markets,
what `benchmarks/live.py` offers), loads the markets through `OkxExchange` with `collect`'s
allocator settings (`okx_collector.memory`), then reloads them `--reloads` times, as `collect`
does every 10 minutes (`live/lifecycle.py`), printing the process's RSS and peak after each.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import resource
from pathlib import Path

from simproc import Simulator

import okx_collector.live.run  # noqa: F401  (everything `collect` imports)
from okx_collector.exchange import OkxExchange

try:
    from okx_collector.memory import give_back, tune_for_long_run
except ImportError:  # a tree from before them (to compare): glibc's and Arrow's defaults

    def give_back() -> None:
        pass

    def tune_for_long_run() -> None:
        pass


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run(rest_url: str, ws_url: str, reloads: int) -> None:
    ex = OkxExchange(rest_url, ws_url)
    try:
        gc.collect()
        before = rss_mb()
        await ex.load_markets()
        gc.collect()
        markets = len(ex.client.markets)
        print(f"imports {before:.1f} MB; {markets} markets loaded: {rss_mb():.1f} MB "
              f"(+{rss_mb() - before:.1f}), peak {peak_mb():.1f} MB")  # fmt: skip
        for n in range(1, reloads + 1):
            await ex.load_markets(reload=True)
            gc.collect()
            give_back()
            print(f"reload {n}: {rss_mb():.1f} MB, peak {peak_mb():.1f} MB")
    finally:
        await ex.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instruments", type=int, default=1000)
    parser.add_argument("--reloads", type=int, default=3)
    args = parser.parse_args()
    tune_for_long_run()
    sim = Simulator("--extra-instruments", str(args.instruments), "--speed", "1")
    try:
        asyncio.run(run(sim.rest_url, sim.ws_url, args.reloads))
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
