"""The `export-qlib` command: the store, in qlib's binary format."""

from __future__ import annotations

import logging
from pathlib import Path

from rich.console import Console

from okx_collector.config import Settings
from okx_collector.errors import BadInput
from okx_collector.qlib_export import export_qlib
from okx_collector.store import Store
from okx_collector.timeframes import Timeframe, UnknownTimeframe

log = logging.getLogger("okx_collector.export")


def run_export(settings: Settings, *, out: Path, timeframe: str | None) -> None:
    try:
        tf = Timeframe.parse(timeframe) if timeframe else settings.timeframes[0]
    except UnknownTimeframe as exc:
        raise BadInput(str(exc)) from None
    if not settings.data_dir.is_dir():
        raise BadInput(f"no dataset at {settings.data_dir}: run `okx-collector backfill` first")
    report = export_qlib(Store(settings.data_dir), out, tf, progress=log.info)
    Console(stderr=True).print(f"export-qlib: {report}")
