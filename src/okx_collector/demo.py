"""`demo`: the whole pipeline offline, against the in-process simulator, in about a minute."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from rich.console import Console

from okx_collector.backfill import run_backfill_async
from okx_collector.backfill.progress import make_progress
from okx_collector.config import build_settings
from okx_collector.coverage_html import render_coverage_html
from okx_collector.errors import unwrap
from okx_collector.live.run import collect_async
from okx_collector.qlib_export import export_qlib
from okx_collector.session import data_dir_lock
from okx_collector.simulator import Simulator
from okx_collector.status import collect_status, render_status
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe

log = logging.getLogger("okx_collector.demo")

DEMO_TIMEFRAMES = "1m,15m"
DEMO_HISTORY = "2d"


async def _demo(data_dir: Path, live_seconds: float, speed: float, console: Console) -> None:
    # Pushes every 0.1 s real = 6 simulated s at 60x: OKX's cadence, scaled like the clock.
    async with Simulator(seed=7, speed=speed, push_interval=max(0.02, 30 / speed / 5)) as sim:
        console.rule("[bold]1. simulator")
        console.print(f"OKX simulator at {sim.rest_url} and {sim.ws_url}, {speed:g}x real time")
        settings = build_settings(
            {
                "data_dir": str(data_dir / "dataset"),
                "rest_url": sim.rest_url,
                "ws_url": sim.ws_url,
                "timeframes": DEMO_TIMEFRAMES,
                "since": DEMO_HISTORY,
                "poll_interval": 5,
                "heartbeat": 10,
            },
            env={},
        )
        console.rule("[bold]2. backfill")
        report = await run_backfill_async(settings, progress=make_progress(console))
        console.print(
            f"{report.written} candles and {report.funding_rows} funding rates in "
            f"{report.seconds:.1f}s ({report.requests} requests at OKX's rate limits)"
        )
        console.rule(f"[bold]3. collect live for {live_seconds:g}s (auto mode)")
        stop = asyncio.Event()
        collecting = asyncio.create_task(collect_async(settings, stop))
        await asyncio.sleep(live_seconds)
        stop.set()
        collector = await collecting
        console.print(f"live: {collector.totals_line()}", soft_wrap=True)
    console.rule("[bold]4. export to qlib")
    store = Store(settings.data_dir)
    qlib_dir = data_dir / "qlib"
    export = await asyncio.to_thread(export_qlib, store, qlib_dir, Timeframe.parse("15m"))
    console.print(f"{export}", soft_wrap=True)
    console.rule("[bold]5. status")
    statuses = collect_status(store, sim.now_ms())
    render_status(statuses, console)
    coverage_page = data_dir / "coverage.html"
    await asyncio.to_thread(
        coverage_page.write_text, render_coverage_html(statuses, source=str(data_dir))
    )
    console.rule("[bold]where everything is")
    console.print(f"dataset (Parquet): {settings.data_dir.resolve()}", soft_wrap=True)
    console.print(f"qlib export:       {qlib_dir.resolve()}", soft_wrap=True)
    console.print(f"coverage page:     {coverage_page.resolve()}", soft_wrap=True)
    # One statement per line, flush left and never wrapped by the console: pasted into
    # `python`, each block runs as it is.
    pandas_lines = [
        "from okx_collector import read_candles",
        f'df = read_candles("{settings.data_dir.resolve()}", "BTC/USDT", "15m")',
        "print(df.tail())",
    ]
    console.print("\nLoad it as a pandas DataFrame:")
    for line in pandas_lines:
        console.print(line, highlight=False, soft_wrap=True, markup=False)
    console.print("Load it with qlib (pip install 'okx-collector\\[qlib]'):")
    qlib_lines = [
        "import qlib",
        "from qlib.data import D",
        f'qlib.init(provider_uri="{qlib_dir.resolve()}", region="us")',
        'print(D.features(["BTC-USDT"], ["$close", "$volume", "$funding_rate"], '
        'freq="15min").tail())',
    ]
    for line in qlib_lines:
        console.print(line, highlight=False, soft_wrap=True, markup=False)


def run_demo(data_dir: Path, *, live_seconds: float = 30.0, speed: float = 60.0) -> None:
    """Simulator, backfill, live collection, qlib export and status, all under `data_dir`."""
    console = Console()
    started = time.monotonic()
    with data_dir_lock(data_dir):
        try:
            asyncio.run(_demo(data_dir, live_seconds, speed, console))
        except BaseExceptionGroup as group:
            raise unwrap(group) from None
    console.print(f"\ndemo finished in {time.monotonic() - started:.0f}s")
