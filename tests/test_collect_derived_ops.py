"""Mark, index and open interest in the operations metrics, over real wires: their rows reach the
store through the collector's one writer, so /metrics counts them by kind and source and their
close->disk delays by kind, beside the trade candles'."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from okx_collector.config import Settings
from okx_collector.simulator import Simulator
from okx_collector.store.journal import list_journal
from tests.test_ops import SPEED, Scraper, collecting, free_port, ops_settings, value

MakeSettings = Callable[..., Settings]
KINDS = ("candles", "mark_candles", "index_candles", "open_interest")


async def test_derived_rows_are_counted_by_kind_and_source(make_settings: MakeSettings) -> None:
    async with Simulator(seed=44, speed=SPEED, rate_limit_scale=0, push_interval=0.01) as sim:
        port = free_port()
        settings = ops_settings(make_settings, sim, metrics_port=port, series="trade,mark,index,oi")
        async with collecting(settings) as task, aiohttp.ClientSession() as session:
            scrape = Scraper(session, port)

            async def every_kind_live() -> bool:
                assert not task.done(), task
                samples = await scrape.metrics()
                rows = "okx_collector_rows_written_total"
                delays = "okx_collector_close_to_disk_seconds_count"
                return all(
                    value(samples, rows, kind=k, source="ws") > 0
                    and value(samples, delays, kind=k, source="ws") > 0
                    for k in KINDS
                )

            await scrape.until("every kind written from pushes", every_kind_live)
            samples = await scrape.metrics()
            # The start-up catch-up of mark and index candles went through the writer too.
            for kind in ("mark_candles", "index_candles"):
                assert value(samples, "okx_collector_rows_written_total",
                             kind=kind, source="catchup") > 0, kind  # fmt: skip
            # A live mark candle is durable well within a second of its close (the simulator
            # pushes it at the close); open interest at least OI_SETTLE_MS after its close.
            for kind, low, high in (("mark_candles", 0.0, 1.0), ("open_interest", 10.0, 60.0)):
                total = value(samples, "okx_collector_close_to_disk_seconds_sum",
                              kind=kind, source="ws")  # fmt: skip
                count = value(samples, "okx_collector_close_to_disk_seconds_count",
                              kind=kind, source="ws")  # fmt: skip
                assert low / SPEED <= total / count <= high, (kind, total / count)
    # Every kind's live rows went into journal files (compacted at the clean stop: none left).
    assert all(not list_journal(settings.data_dir, k) for k in KINDS)


async def test_refused_derived_subscriptions_are_counted_by_kind(
    make_settings: MakeSettings,
) -> None:
    """A refused mark, index or open-interest subscription counts in `refusals` under its own
    kind (the trade candles' stay at 0), and in the collector's `refused` total."""
    async with Simulator(seed=45, speed=SPEED, rate_limit_scale=0, push_interval=0.01) as sim:
        # OKX answers 60018 to these, though the instruments are listed.
        sim.refuse_derived("mark-price-candle", "ETH-USDT-SWAP")
        sim.refuse_derived("index-candle", "BTC-USDT")
        sim.refuse_derived("open-interest", "ETH-USDT-SWAP")
        port = free_port()
        settings = ops_settings(make_settings, sim, metrics_port=port, series="trade,mark,index,oi")
        refusals = "okx_collector_refusals_total"
        async with collecting(settings) as task, aiohttp.ClientSession() as session:
            scrape = Scraper(session, port)

            async def all_refused() -> bool:
                assert not task.done(), task
                samples = await scrape.metrics()
                return all(
                    value(samples, refusals, kind=k) == 1
                    for k in ("mark_candles", "index_candles", "open_interest")
                )

            await scrape.until("each refusal counted under its kind", all_refused)
            # The unrefused series still stream (their subscriptions were not counted).
            await scrape.until(
                "the index of ETH-USDT from pushes",
                lambda: _counted_ws(scrape, "index_candles"),
            )
            samples = await scrape.metrics()
            assert value(samples, refusals, kind="candles") == 0
            assert value(samples, refusals, kind="funding") == 0
        collector = task.result()
    assert collector.counters.refused == 3
    assert "refused=3 " in collector.totals_line()


async def _counted_ws(scrape: Scraper, kind: str) -> bool:
    samples = await scrape.metrics()
    return value(samples, "okx_collector_rows_written_total", kind=kind, source="ws") > 0
