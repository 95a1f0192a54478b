"""How much the simulator sustains: WS push throughput and history page latency.

The simulator runs as a subprocess (the `simulate` command) so that the client's work does not
count against it; its CPU time is read from /proc. Run with `-s` to see the numbers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from sim_helpers import MINUTE, START_MS

# A measurement, not a check of behaviour: it needs the machine to itself, so it stays out of the
# default run (`-m 'not perf'` in pyproject's addopts) and runs with `pytest -m perf`.
pytestmark = [pytest.mark.timeout(90), pytest.mark.perf]

SRC = str(Path(__file__).resolve().parents[1] / "src")
EXTRA = 1000  # synthetic pairs: 2,000 instruments
PUSH_INTERVAL = 0.5
MEASURE_S = 4.0


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(rest: str, ws_url: str, pid: int) -> dict[str, float]:
    ids = [f"SIM{i:04d}-USDT{suffix}" for i in range(1, EXTRA + 1) for suffix in ("", "-SWAP")]
    counts = {"frames": 0, "acks": 0}
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{ws_url}/business", max_msg_size=0) as ws:
            for start in range(0, len(ids), 100):
                args = [{"channel": "candle15m", "instId": i} for i in ids[start : start + 100]]
                await ws.send_str(json.dumps({"op": "subscribe", "args": args}))

            async def count() -> None:
                async for msg in ws:
                    if '"event"' in msg.data:
                        counts["acks"] += 1
                    else:
                        counts["frames"] += 1

            reader = asyncio.ensure_future(count())
            await asyncio.sleep(1.5)  # subscribe, first pushes
            frames0, cpu0, t0 = counts["frames"], _cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(MEASURE_S)
            frames1, cpu1, t1 = counts["frames"], _cpu_seconds(pid), time.monotonic()
            reader.cancel()
        # history pages over HTTP, one after another
        timings = []
        for page in range(30):
            after = START_MS - page * 300 * 15 * MINUTE
            url = (
                f"{rest}/api/v5/market/history-candles?instId=BTC-USDT&bar=15m&limit=300"
                f"&after={after}"
            )
            started = time.perf_counter()
            async with http.get(url) as resp:
                body = await resp.json()
            timings.append(time.perf_counter() - started)
            assert len(body["data"]) == 300
    elapsed = t1 - t0
    result = {
        "acks": counts["acks"],
        "frames_per_s": (frames1 - frames0) / elapsed,
        "page_ms_median": sorted(timings)[len(timings) // 2] * 1000,
    }
    if cpu0 is not None and cpu1 is not None:
        result["server_cpu_share"] = (cpu1 - cpu0) / elapsed
    return result


def test_push_throughput_and_page_latency() -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "okx_collector.simulator.cli",
            "--port",
            "0",
            "--extra-instruments",
            str(EXTRA),
            "--push-interval",
            str(PUSH_INTERVAL),
            "--rate-limit-scale",
            "0",
            "--start",
            str(START_MS),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        rest = proc.stdout.readline().split()[1]
        ws_url = proc.stdout.readline().split()[1]
        result = asyncio.run(_measure(rest, ws_url, proc.pid))
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    expected = 2 * EXTRA / PUSH_INTERVAL
    print(
        f"\n{2 * EXTRA} subscriptions at {PUSH_INTERVAL} s on one connection: "
        f"{result['frames_per_s']:.0f} frames/s (expected {expected:.0f}), "
        f"server CPU {result.get('server_cpu_share', float('nan')):.0%}; "
        f"300-row 15m history page over HTTP: {result['page_ms_median']:.1f} ms median"
    )
    assert proc.returncode == 0, err
    assert result["acks"] == 2 * EXTRA
    assert result["frames_per_s"] > 0.85 * expected
