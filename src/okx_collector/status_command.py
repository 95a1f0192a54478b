"""The `status` command: what is stored, what is missing, how fresh (read-only).

Ages are measured on the exchange's clock (DESIGN §2): status asks `--rest-url` for its time
once, for up to CLOCK_TIMEOUT seconds. When it cannot (offline, a stopped simulator) it uses
this machine's clock and says so in the title and the JSON (`clock.source = "local"`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from okx_collector.config import OKX_WS_URL, Settings
from okx_collector.errors import BadInput, EnvironmentProblem
from okx_collector.status import (
    Clock,
    SeriesStatus,
    collect_status,
    is_stale,
    render_status,
    status_to_json,
)
from okx_collector.store import Store
from okx_collector.stored import Holdings, series_filter
from okx_collector.summary import emit_summary

if TYPE_CHECKING:
    from okx_collector.exchange import OkxExchange

CLOCK_TIMEOUT = 2.0  # seconds: status must stay quick when the exchange cannot be reached
CHECK_FAILED = 3  # `status --check`: a series has gaps or is stale


async def _ask_time(exchange: OkxExchange, seconds: float) -> int:
    try:
        async with asyncio.timeout(seconds):
            return await exchange.fetch_time()
    finally:
        with contextlib.suppress(Exception):  # closing must not hide the answer or the error
            await exchange.close()


def exchange_now(rest_url: str, timeout: float = CLOCK_TIMEOUT) -> tuple[int, Clock]:
    """The exchange's current time, or this machine's, labelled, when it cannot answer in time."""
    # Imported and built here, off the event loop: ccxt takes most of a second to import, and
    # only this command's clock needs it.
    from okx_collector.exchange import OkxExchange

    exchange = OkxExchange(rest_url, OKX_WS_URL, timeout_ms=int(timeout * 1000))
    try:
        now = asyncio.run(_ask_time(exchange, timeout))
    except Exception as exc:  # any failure to ask means the same thing: fall back, say so
        reason = f"no answer in {timeout:g} s" if isinstance(exc, TimeoutError) else "unreachable"
        local = Clock("local", f"ages on this machine's clock: {rest_url} {reason}")
        return int(time.time() * 1000), local
    return now, Clock("exchange", f"ages on exchange time from {rest_url}")


def check_line(statuses: list[SeriesStatus]) -> str | None:
    """One line naming the series with gaps or stale ones, or None when all is well."""
    problems = []
    for s in statuses:
        why = []
        if s.coverage.gap_count:
            why.append(f"{s.coverage.gap_count} gap(s)")
        if is_stale(s):
            why.append(f"stale, {s.coverage.behind} due")
        if why:
            problems.append(f"{s.name} ({', '.join(why)})")
    if not problems:
        return None
    shown = ", ".join(problems[:10])
    more = f" and {len(problems) - 10} more" if len(problems) > 10 else ""
    return f"{len(problems)} of {len(statuses)} series: {shown}{more}"


def run_status(
    settings: Settings,
    *,
    as_json: bool,
    check: bool = False,
    html: Path | None = None,
    console: Console | None = None,
    clock_timeout: float = CLOCK_TIMEOUT,
) -> int:
    """Print the status; the exit code (CHECK_FAILED when `check` finds gaps or stale series)."""
    if not settings.data_dir.is_dir():
        raise BadInput(
            f"no dataset at {settings.data_dir}: run `okx-collector backfill` first "
            "or pass --data-dir"
        )
    store = Store(settings.data_dir)
    wanted = series_filter(settings, Holdings.of(store))
    now_ms, clock = exchange_now(settings.rest_url, clock_timeout)
    statuses = collect_status(store, now_ms, wanted)
    if html is not None:
        write_html(html, statuses, source=str(settings.data_dir))
    if as_json:
        doc = json.loads(status_to_json(statuses))
        doc["clock"] = {"source": clock.source, "note": clock.note}
        click.echo(json.dumps(doc, indent=2))
    elif html is None:
        render_status(statuses, console or Console(), clock)
    problem = check_line(statuses) if check else None
    if problem is None:
        return 0
    emit_summary("status --check", problem, settings.log_format, failed=True)
    return CHECK_FAILED


def write_html(path: Path, statuses: list[SeriesStatus], *, source: str) -> None:
    """Write the coverage page to `path` and say so in one line on stderr."""
    from okx_collector.coverage_html import render_coverage_html

    if not path.parent.is_dir():
        raise BadInput(f"--html {path}: no folder {path.parent}")
    page = render_coverage_html(statuses, source=source)
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise EnvironmentProblem(f"--html {path}: cannot write: {exc.strerror or exc}") from exc
    click.echo(f"wrote {path} ({len(statuses):,} series, {len(page) // 1024:,} KiB)", err=True)
