"""Mark and index candles computed for many series in one vectorised batch (pure, no sockets):
value by value what each model computes alone, and what a connection pushes at a close."""

from __future__ import annotations

import json
import random

from okx_collector.simulator.bars import BARS, MINUTE_MS, Bar
from okx_collector.simulator.clock import SimClock
from okx_collector.simulator.derived import _LIVE_CACHE, PriceLive, PriceModel, price_lives
from okx_collector.simulator.derived_market import DerivedMarket
from okx_collector.simulator.derived_pushes import PriceCandleSub
from okx_collector.simulator.market import Market
from okx_collector.simulator.pushes import CandleSub, PushScheduler
from sim_helpers import START_MS

PERPS = 6


def _models(derived: DerivedMarket) -> list[PriceModel]:
    swaps = derived.market.instruments("SWAP")[:PERPS]
    return [derived.mark(i.inst_id) for i in swaps] + [
        derived.index(derived.index_of(i)) for i in swaps
    ]


def _states(live: PriceLive, bar: Bar) -> list[tuple[int, int, int, int]]:
    """The candle as it stands at instants across its period (minute starts, mid-minutes, 1 ms
    before the close) and its final values."""
    step = max(1, bar.minutes // 12) * MINUTE_MS
    instants = [live.open_ts + k for k in range(0, bar.ms, step)]
    instants += [t + MINUTE_MS // 3 for t in instants] + [live.close_ts - 1]
    return [live.at(t) for t in instants] + [live.final()]


def test_a_batch_equals_each_model_computed_alone_value_by_value() -> None:
    market = Market(seed=5, extra_instruments=PERPS)
    batch_models = _models(DerivedMarket(market))
    alone_models = _models(DerivedMarket(market))  # fresh models: nothing cached
    keys = [
        (index, BARS[name], BARS[name].floor(START_MS) + shift * BARS[name].ms)
        for name in ("1m", "5m", "1H")
        for shift in (-3, 0, 2)
        for index in range(len(batch_models))
    ]
    # mark and index, three bars and three open times in one call (one batch of each)
    lives = price_lives([(batch_models[i], bar, ts) for i, bar, ts in keys])
    for (i, bar, open_ts), live in zip(keys, lives, strict=True):
        model = alone_models[i]
        alone = model.live(bar, open_ts)
        assert (live.open_ts, live.close_ts) == (open_ts, open_ts + bar.ms)
        assert _states(live, bar) == _states(alone, bar)
        # and what REST serves: the closed candle, and each 1m open of the model's minutes
        assert live.final() == model.closed_raw(bar, open_ts, 1)[0][1:]
        minutes = model.minutes(open_ts // MINUTE_MS, bar.minutes)
        opens = [live.at(open_ts + k * MINUTE_MS)[3] for k in range(bar.minutes)]
        assert opens == minutes[0].tolist()


def test_a_batch_reuses_cached_candles_and_keeps_each_cache_bounded() -> None:
    derived = DerivedMarket(Market(seed=5, extra_instruments=1))
    model = derived.mark("SIM0001-USDT-SWAP")
    bar = BARS["1m"]
    first = bar.floor(START_MS)
    kept = model.live(bar, first)
    opens = [first + k * bar.ms for k in range(_LIVE_CACHE + 40)]
    lives = price_lives([(model, bar, ts) for ts in opens] + [(model, bar, first)])
    assert lives[0] is kept and lives[-1] is kept  # from the cache, not computed again
    assert [live.open_ts for live in lives[:-1]] == opens  # more than the cache holds
    assert len(model._live) <= _LIVE_CACHE
    again = DerivedMarket(Market(seed=5, extra_instruments=1)).mark("SIM0001-USDT-SWAP")
    for ts in (opens[1], opens[-1]):
        assert lives[opens.index(ts)].final() == again.closed_raw(bar, ts, 1)[0][1:]


def test_a_close_pushes_every_mark_and_index_candle_then_the_next_with_the_models_values() -> None:
    market = Market(seed=9, extra_instruments=PERPS)
    derived = DerivedMarket(market)
    now = [100.0]
    clock = SimClock(START_MS, 1.0, monotonic=lambda: now[0])
    schedule = PushScheduler(market, clock, 0.5, random.Random(2))
    subs: list[CandleSub | PriceCandleSub] = []
    models: dict[tuple[str, str], PriceModel] = {}
    for inst in market.instruments("SWAP")[:PERPS]:
        subs.append(CandleSub(inst, BARS["1m"], json.dumps({"channel": "candle1m"})))
        for channel, model in (
            ("mark-price-candle", derived.mark(inst.inst_id)),
            ("index-candle", derived.index(derived.index_of(inst))),
        ):
            for name in ("1m", "5m"):
                arg = json.dumps({"channel": channel + name, "instId": model.key})
                bar = BARS[name]
                subs.append(PriceCandleSub(model, bar, arg, derived.first_open(model, bar)))
                models[(channel + name, model.key)] = model
    schedule.add(subs, now[0], clock.now_ms())
    close_ms = BARS["5m"].ceil(START_MS)  # 1m and 5m candles close together
    now[0] += (close_ms - START_MS) / 1000 - 0.3
    schedule.due(now[0], clock.now_ms())
    now[0] += 0.31
    at = clock.now_ms()
    rows = [json.loads(f) for f in schedule.confirms(at) + schedule.due(now[0], at)]
    price_rows = [r for r in rows if r["arg"]["channel"] != "candle1m"]
    seen: dict[tuple[str, str, str], list[str]] = {}
    for message in price_rows:
        channel, series = message["arg"]["channel"], message["arg"]["instId"]
        [row] = message["data"]
        seen[(channel, series, row[5])] = row
    assert len(seen) == len(price_rows) == 2 * len(models)  # a confirm and a new candle each
    for (channel, series), model in models.items():
        bar = BARS[channel.removeprefix("mark-price-candle").removeprefix("index-candle")]
        closed, fresh = seen[(channel, series, "1")], seen[(channel, series, "0")]
        [(ts, *raw)] = model.closed_raw(bar, close_ms - bar.ms, 1)
        assert closed == model.row(ts, (raw[0], raw[1], raw[2], raw[3]), "1")
        assert fresh == model.row(close_ms, model.live(bar, close_ms).at(at), "0")
