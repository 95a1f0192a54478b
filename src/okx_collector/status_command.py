"""The `status` command: what is stored, what is missing, how fresh (read-only)."""

from __future__ import annotations

import time
from pathlib import Path

import click
from rich.console import Console

from okx_collector.config import Settings
from okx_collector.errors import BadInput, EnvironmentProblem
from okx_collector.status import SeriesStatus, collect_status, render_status, status_to_json
from okx_collector.store import Store


def run_status(
    settings: Settings,
    *,
    as_json: bool,
    console: Console | None = None,
    html: Path | None = None,
) -> None:
    if not settings.data_dir.is_dir():
        raise BadInput(
            f"no dataset at {settings.data_dir}: run `okx-collector backfill` first "
            "or pass --data-dir"
        )
    store = Store(settings.data_dir)
    # Status is offline: ages are measured against this machine's clock.
    statuses = collect_status(store, int(time.time() * 1000))
    if html is not None:
        write_html(html, statuses, source=str(settings.data_dir))
    if as_json:
        click.echo(status_to_json(statuses))
    elif html is None:
        render_status(statuses, console or Console())


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
