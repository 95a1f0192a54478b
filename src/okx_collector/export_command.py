"""The `export-qlib` command: the store, in qlib's binary format.

Each of --timeframes goes into the same directory: qlib keeps one calendar and one set of `.bin`
files per frequency side by side, and the manifest describes every timeframe exported there.
"""

from __future__ import annotations

import logging
from pathlib import Path

from okx_collector.config import Settings
from okx_collector.errors import BadInput
from okx_collector.qlib_export import ExportReport, export_qlib
from okx_collector.store import Store
from okx_collector.stored import Holdings, series_filter
from okx_collector.summary import emit_summary
from okx_collector.timeframes import Timeframe, UnknownTimeframe

log = logging.getLogger("okx_collector.export")


def _timeframes(settings: Settings, timeframe: str | None) -> tuple[Timeframe, ...]:
    if timeframe is None:
        return settings.timeframes  # the --timeframes list, or the 15m default
    if "timeframes" in settings.given:
        raise BadInput("give --timeframe or --timeframes, not both")
    try:
        return (Timeframe.parse(timeframe),)
    except UnknownTimeframe as exc:
        raise BadInput(str(exc)) from None


def run_export(settings: Settings, *, out: Path, timeframe: str | None) -> list[ExportReport]:
    """Export every chosen timeframe (all of --symbols' instruments, or every stored one)."""
    timeframes = _timeframes(settings, timeframe)
    if not settings.data_dir.is_dir():
        raise BadInput(f"no dataset at {settings.data_dir}: run `okx-collector backfill` first")
    store = Store(settings.data_dir)
    held = Holdings.of(store)
    missing = [tf.name for tf in timeframes if tf.name not in held.timeframes]
    if missing:
        raise BadInput(
            f"the store at {settings.data_dir} has no {', '.join(missing)} candles (it holds: "
            f"{', '.join(held.timeframes) or 'none'}); run backfill first, or pick another "
            "--timeframes"
        )
    wanted = series_filter(settings, held)
    reports = []
    for tf in timeframes:
        instruments = None
        if wanted.inst_ids is not None:
            instruments = [i for i, t in held.candles if t == tf.name and wanted(i, t)]
            if not instruments:
                raise BadInput(f"none of --symbols has {tf.name} candles in {settings.data_dir}")
        report = export_qlib(store, out, tf, instruments, progress=log.info)
        emit_summary(
            "export-qlib", report.summary(), settings.log_format,
            timeframe=tf.name, instruments=len(report.instruments), bars=report.bars,
            rows=report.rows, missing=report.missing, seconds=round(report.seconds, 3),
            out=str(report.out),
        )  # fmt: skip
        reports.append(report)
    return reports
