"""How late the simulator's confirm pushes reach a bare client: the floor under close->disk.

    python benchmarks/sim_confirms.py [--series 1000] [--closes 3] [--connections 10]

Starts `okx-collector simulate --extra-instruments SERIES --push-interval 0.5 --speed 1` and
subscribes every series' candle1m channel over raw aiohttp websockets (no ccxt, no parsing past
`json.loads`, nothing stored). For each candle close it prints when the confirm pushes arrived,
in ms after the close: whatever the collector does, its close->disk delay cannot be shorter
than this (the simulator builds the frames of every series at the close, on one thread).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp
from simproc import Simulator


async def listen(ws_url: str, ids: list[str], arrivals: list[float]) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        for i in range(0, len(ids), 100):
            args = [{"channel": "candle1m", "instId": x} for x in ids[i : i + 100]]
            await ws.send_str(json.dumps({"op": "subscribe", "args": args}))
        async for message in ws:
            for row in json.loads(message.data).get("data", []):
                if isinstance(row, list) and row[-1] == "1":  # confirm: the close of row[0]
                    arrivals.append(time.time() * 1000 - (int(row[0]) + 60_000))


async def main(series: int, closes: int, connections: int) -> None:
    sim = Simulator(
        "--extra-instruments", str(series), "--push-interval", "0.5", "--speed", "1",
        "--rate-limit-scale", "1",
    )  # fmt: skip
    try:
        ids = [f"SIM{i:04d}-USDT" for i in range(1, series + 1)]
        arrivals: list[float] = []
        per = -(-series // connections)
        url = sim.ws_url + "/business"
        tasks = [
            asyncio.create_task(listen(url, ids[i : i + per], arrivals))
            for i in range(0, series, per)
        ]
        for _ in range(closes):
            await asyncio.sleep(60 - time.time() % 60 + 2)  # 2 s past the next close
            got, arrivals[:] = sorted(arrivals), []
            if got:
                print(
                    f"{len(got)} confirms after the close: first {got[0]:.0f} ms, "
                    f"p50 {got[len(got) // 2]:.0f} ms, last {got[-1]:.0f} ms",
                    flush=True,
                )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        sim.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--closes", type=int, default=3)
    parser.add_argument("--connections", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.series, args.closes, args.connections))
