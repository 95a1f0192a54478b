"""`backfill`: fetch the history the store lacks, at the rate-limit ceiling."""

from okx_collector.backfill.command import run_backfill, run_backfill_async
from okx_collector.backfill.planner import Page, plan_pages
from okx_collector.backfill.runner import Backfiller, BackfillReport

__all__ = [
    "BackfillReport",
    "Backfiller",
    "Page",
    "plan_pages",
    "run_backfill",
    "run_backfill_async",
]
