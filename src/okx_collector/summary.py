"""A command's closing summary: one line on stderr, never wrapped, JSON under --log-format json.

Written with `click.echo`, not a rich Console: a Console hard-wraps at 80 columns (padding with
spaces) when stderr is a pipe, which breaks `grep` and log collectors.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click


def emit_summary(command: str, text: str, log_format: str = "text", **fields: Any) -> None:
    """`backfill: 1200 candle rows ...`, or one JSON object shaped like the log lines with the
    numbers as fields (`"summary": {"written": 1200, ...}`)."""
    if log_format != "json":
        click.echo(f"{command}: {text}", err=True)
        return
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": "info",
        "logger": f"okx_collector.{command.replace('-', '_')}",
        "message": f"{command}: {text}",
        "summary": fields,
    }
    click.echo(json.dumps(entry, default=str), err=True)
