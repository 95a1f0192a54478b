"""What a candle close costs the simulator's websocket pusher, in process (no sockets, no ccxt).

    python benchmarks/sim_close.py [--series 1000] [--closes 2]

One connection's `PushScheduler` holds the 1m trade, mark-price and index candle subscriptions of
SERIES perpetuals (3 x SERIES series), on a stepped simulated clock. At each close it times
`confirms()` (the confirm frames, sent first) and the `due()` that follows (every series moved to
its next candle: the new in-progress candles computed and their frames built). While `due()`
runs, the connection pushes nothing. Then, side by side, the new mark and index candles of one
close computed one model at a time (as the pusher did before) and in one vectorised batch per
kind (as it does now), on fresh models (nothing cached).
"""

from __future__ import annotations

import argparse
import json
import random
import time

from okx_collector.simulator.bars import BARS
from okx_collector.simulator.clock import SimClock
from okx_collector.simulator.derived import PriceModel, price_lives
from okx_collector.simulator.derived_market import DerivedMarket
from okx_collector.simulator.derived_pushes import PriceCandleSub
from okx_collector.simulator.market import Market
from okx_collector.simulator.pushes import CandleSub, PushScheduler

SEED = 7
START_MS = 1_768_435_650_000  # 2026-01-15T00:07:30Z, mid-minute
BAR = BARS["1m"]


def models(derived: DerivedMarket, series: int) -> list[PriceModel]:
    """The mark and index models of the first `series` synthetic perpetuals."""
    ids = [f"SIM{i:04d}" for i in range(1, series + 1)]
    return [derived.mark(f"{x}-USDT-SWAP") for x in ids] + [derived.index(f"{x}-USDT") for x in ids]


def subscriptions(
    market: Market, derived: DerivedMarket, series: int
) -> list[CandleSub | PriceCandleSub]:
    subs: list[CandleSub | PriceCandleSub] = []
    for i in range(1, series + 1):
        inst = market.instrument(f"SIM{i:04d}-USDT-SWAP")
        arg = json.dumps({"channel": "candle1m", "instId": inst.inst_id})
        subs.append(CandleSub(inst, BAR, arg))
    for model in models(derived, series):
        channel = "mark-price-candle1m" if model.kind == "mark" else "index-candle1m"
        arg = json.dumps({"channel": channel, "instId": model.key})
        subs.append(PriceCandleSub(model, BAR, arg, derived.first_open(model, BAR)))
    return subs


def closes(series: int, count: int) -> None:
    market = Market(SEED, extra_instruments=series)
    derived = DerivedMarket(market)
    now = [100.0]
    clock = SimClock(START_MS, 1.0, monotonic=lambda: now[0])
    schedule = PushScheduler(market, clock, 0.5, random.Random(1))
    subs = subscriptions(market, derived, series)
    start = time.perf_counter()
    schedule.add(subs, now[0], clock.now_ms())
    print(f"subscribe {len(subs):,} series: {time.perf_counter() - start:.3f} s")
    for _ in range(count):
        while True:  # in-progress pushes every 50 ms of real time up to the close
            now[0] += 0.05
            at = clock.now_ms()
            start = time.perf_counter()
            confirms = schedule.confirms(at)
            if confirms:
                mid = time.perf_counter()
                frames = schedule.due(now[0], at)
                end = time.perf_counter()
                print(
                    f"close: confirms() {len(confirms):,} frames {mid - start:.3f} s, "
                    f"then due() {len(frames):,} frames {end - mid:.3f} s"
                )
                break
            schedule.due(now[0], at)


def side_by_side(series: int) -> None:
    market = Market(SEED, extra_instruments=series)
    open_ts = BAR.ceil(START_MS)
    one = models(DerivedMarket(market), series)
    start = time.perf_counter()
    for model in one:
        model.live(BAR, open_ts)
    alone = time.perf_counter() - start
    batch = models(DerivedMarket(market), series)
    start = time.perf_counter()
    price_lives([(model, BAR, open_ts) for model in batch])
    together = time.perf_counter() - start
    print(
        f"new mark and index candles of {len(one):,} series: one model at a time {alone:.3f} s, "
        f"one batch per kind {together:.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1000, help="perpetuals (x3 series)")
    parser.add_argument("--closes", type=int, default=2)
    args = parser.parse_args()
    closes(args.series, args.closes)
    side_by_side(args.series)


if __name__ == "__main__":
    main()
