"""The push schedule of one connection (pure: a stepped clock, no sockets): a candle close sends
each series' confirm exactly once, with OKX's final values, before the next candles."""

from __future__ import annotations

import json
import random

from okx_collector.simulator.bars import BARS
from okx_collector.simulator.clock import SimClock
from okx_collector.simulator.faults import Faults
from okx_collector.simulator.market import Market
from okx_collector.simulator.pushes import CandleSub, PushScheduler
from sim_helpers import MINUTE, START_MS

SERIES = [f"SIM{i:04d}-USDT" for i in range(1, 31)]


def _setup(faults: Faults | None = None) -> tuple[Market, list[float], SimClock, PushScheduler]:
    market = Market(seed=3, extra_instruments=len(SERIES))
    now = [100.0]
    clock = SimClock(START_MS, 1.0, monotonic=lambda: now[0])
    schedule = PushScheduler(market, clock, 0.5, random.Random(1), faults)
    subs = [
        CandleSub(
            market.instrument(x), BARS["1m"], json.dumps({"channel": "candle1m", "instId": x})
        )
        for x in SERIES
    ]
    schedule.add(subs, now[0], clock.now_ms())
    return market, now, clock, schedule


def _rows(frames: list[str]) -> list[tuple[str, list[str]]]:
    out = []
    for frame in frames:
        message = json.loads(frame)
        out += [(message["arg"]["instId"], row) for row in message["data"]]
    return out


def test_each_close_is_confirmed_once_with_the_final_values_before_the_next_candles() -> None:
    market, now, clock, schedule = _setup()
    rows: list[tuple[str, list[str]]] = []
    closes = 0
    while closes < 3:  # three closes, in steps of 50 ms of real time (speed 1)
        now[0] += 0.05
        confirms = _rows(schedule.confirms(clock.now_ms()))
        rest = _rows(schedule.due(now[0], clock.now_ms()))
        if confirms:
            closes += 1
            assert {inst for inst, _ in confirms} == set(SERIES)
            assert all(row[8] == "1" for _, row in confirms)
            # then every series' next candle, in progress; no confirm repeated
            assert {inst for inst, row in rest if row[8] == "0"} == set(SERIES)
            assert all(row[8] == "0" for _, row in rest)
            opened = {int(row[0]) for _, row in rest}
            assert opened == {int(confirms[0][1][0]) + MINUTE}
        rows += confirms + rest
    for inst_id in SERIES:
        closed = [row for inst, row in rows if inst == inst_id and row[8] == "1"]
        ts = [int(row[0]) for row in closed]
        assert ts == sorted(set(ts)) and len(ts) == 3
        for row in closed:
            [expected] = market.candles(inst_id, "1m", int(row[0]), int(row[0]) + 1)
            assert [float(x) for x in row[1:6]] == list(expected[1:6])


def test_due_alone_sends_the_close_too_and_a_fault_set_meanwhile_applies() -> None:
    faults = Faults()
    _, now, clock, schedule = _setup(faults)
    for _ in range(600):  # in-progress pushes build the confirm frames ahead of the close
        now[0] += 0.05
        frames = schedule.due(now[0], clock.now_ms())
        if any('"1"]]' in f for f in frames):
            break
    faults.empty_field_share = 1.0  # set before the next close: its confirms carry it
    closed: list[list[str]] = []
    while not closed:
        now[0] += 0.05
        closed = [row for _, row in _rows(schedule.due(now[0], clock.now_ms())) if row[8] == "1"]
    assert len(closed) == len(SERIES)
    assert all("" in row[5:8] for row in closed)
