"""The `status` command: what is stored, what is missing, how fresh (read-only)."""

from __future__ import annotations

import time

import click
from rich.console import Console

from okx_collector.config import Settings
from okx_collector.errors import BadInput
from okx_collector.status import collect_status, render_status, status_to_json
from okx_collector.store import Store


def run_status(settings: Settings, *, as_json: bool, console: Console | None = None) -> None:
    if not settings.data_dir.is_dir():
        raise BadInput(
            f"no dataset at {settings.data_dir}: run `okx-collector backfill` first "
            "or pass --data-dir"
        )
    store = Store(settings.data_dir)
    # Status is offline: ages are measured against this machine's clock.
    statuses = collect_status(store, int(time.time() * 1000))
    if as_json:
        click.echo(status_to_json(statuses))
        return
    render_status(statuses, console or Console())
