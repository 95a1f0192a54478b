"""Export the store to qlib's binary format (DESIGN.md §4b); see docs/qlib.md.

calendar.py    slot times, their fixed-width text lines, UTC months (pure)
arrays.py      candles and funding laid out one value per slot; month checksums (pure)
manifest.py    manifest.json: the deterministic record of what was exported from what
sources.py     which store partitions are known unchanged since the last export
files.py       atomic, streamed and in-place writes of the directory's files
outdir.py      is the directory ours, the export lock, the crash journal
instrument.py  one instrument: full (streamed) or incremental (in place) export
exporter.py    `export_qlib`: the whole directory for one timeframe
"""

from okx_collector.qlib_export.exporter import ExportReport, export_qlib, funding_source

__all__ = ["ExportReport", "export_qlib", "funding_source"]
