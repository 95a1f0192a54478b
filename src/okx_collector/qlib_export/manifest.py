"""`DIR/manifest.json`: what an export wrote, from what, with checksums; the source of truth.

The manifest is written last, atomically, after every data file is in place and synced. A later
export trusts only what it says: files whose size disagrees with it, or a timeframe whose export
was interrupted (see `journal_path`), are rewritten rather than appended to.

It is deterministic: sorted keys, no wall-clock time, so that two exports of the same store give
byte-identical manifests. Times appear twice, as qlib text (`first`) and as ms (`first_ms`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from okx_collector.qlib_export.arrays import MonthSummary
from okx_collector.qlib_export.calendar import format_time

FORMAT = "okx-collector-qlib"  # marks a directory as ours
FORMAT_VERSION = 2  # bump when the meaning of any file changes; older exports are rewritten
MANIFEST = "manifest.json"
INSTRUMENTS_ALL = "instruments/all.txt"


class NotOurs(ValueError):
    """manifest.json exists but was not written by okx-collector's exporter."""


class StaleManifest(ValueError):
    """Our manifest, but of another format version or damaged: nothing in it can be reused."""


def calendar_path(freq: str) -> str:
    """Relative path of a frequency's calendar, under the name qlib looks for.

    qlib opens the calendar by its canonical frequency name (`qlib.utils.time.Freq`): the count
    is omitted only for `day`, so `freq="week"` reads `calendars/1week.txt` (while the feature
    files keep the name the user passes: `close.week.bin`).
    """
    canonical = f"1{freq}" if freq in ("week", "month") else freq
    return f"calendars/{canonical}.txt"


def freq_instruments_path(freq: str) -> str:
    return f"instruments/{freq}.txt"


def feature_path(inst_id: str, field_name: str, freq: str) -> str:
    """Relative path of one feature file (qlib lower-cases instrument and field names)."""
    return f"features/{inst_id.lower()}/{field_name.lower()}.{freq}.bin"


def journal_path(out: Path, timeframe: str) -> Path:
    """Present while an export of `timeframe` is modifying files: a crash leaves it behind."""
    return out / f".okx-collector-incomplete-{timeframe}"


@dataclass(frozen=True, slots=True)
class FileEntry:
    bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class FundingEntry:
    """The settled funding series an instrument's funding_rate came from."""

    source: str  # the perpetual's instId
    rows: int
    first: int  # first settlement time, ms
    last: int  # last settlement time, ms
    sha256: str  # arrays.Funding.digest()


@dataclass(frozen=True, slots=True)
class InstrumentEntry:
    """One instrument of one timeframe."""

    first: int  # open time of the first candle, ms
    last: int  # open time of the last candle, ms
    start_index: int  # calendar slot of `first`
    bars: int  # slots from first to last inclusive
    rows: int  # candles present
    gaps: int  # runs of missing candles
    months: dict[str, MonthSummary]  # "YYYY-MM" -> what that month held
    funding: FundingEntry | None
    files: dict[str, FileEntry]  # relative path -> size and checksum
    # The mark, index and open-interest fields (`qlib_export.derived`), apart from `files`: they
    # come from other series, and are written by `derived_writer` (in full or appended to).
    derived: dict[str, FileEntry] = field(default_factory=dict)

    @property
    def missing(self) -> int:
        return self.bars - self.rows


@dataclass(frozen=True, slots=True)
class TimeframeEntry:
    """Everything exported for one timeframe."""

    freq: str
    store: str  # the store's data directory, absolute
    first: int  # calendar's first bar, ms
    last: int  # calendar's last bar, ms
    files: dict[str, FileEntry]  # calendar and per-frequency instruments file
    instruments: dict[str, InstrumentEntry]


@dataclass(frozen=True, slots=True)
class Manifest:
    version: str  # okx-collector's version
    timeframes: dict[str, TimeframeEntry] = field(default_factory=dict)
    files: dict[str, FileEntry] = field(default_factory=dict)  # instruments/all.txt


# -- to JSON ----------------------------------------------------------------------------------


def _time(ms: int) -> str:
    return format_time(ms)


def _file(e: FileEntry) -> dict[str, Any]:
    return {"bytes": e.bytes, "sha256": e.sha256}


def _month(m: MonthSummary) -> dict[str, Any]:
    return {
        "rows": m.rows,
        "first_ms": m.first,
        "last_ms": m.last,
        "gaps": m.gaps,
        "sha256": m.sha256,
    }


def _instrument(e: InstrumentEntry) -> dict[str, Any]:
    doc = _instrument_core(e)
    if e.derived:  # (absent otherwise: exports without these fields keep their bytes)
        doc["derived"] = {k: _file(f) for k, f in e.derived.items()}
    return doc


def _instrument_core(e: InstrumentEntry) -> dict[str, Any]:
    funding = None
    if e.funding is not None:
        f = e.funding
        funding = {
            "source": f.source,
            "rows": f.rows,
            "first": _time(f.first),
            "first_ms": f.first,
            "last": _time(f.last),
            "last_ms": f.last,
            "sha256": f.sha256,
        }
    return {
        "first": _time(e.first),
        "first_ms": e.first,
        "last": _time(e.last),
        "last_ms": e.last,
        "start_index": e.start_index,
        "bars": e.bars,
        "rows": e.rows,
        "gaps": e.gaps,
        "missing": e.missing,
        "funding": funding,
        "months": {k: _month(m) for k, m in e.months.items()},
        "files": {k: _file(f) for k, f in e.files.items()},
    }


def _timeframe(name: str, t: TimeframeEntry, step: int) -> dict[str, Any]:
    return {
        "timeframe": name,
        "freq": t.freq,
        "store": t.store,
        "calendar": {
            "first": _time(t.first),
            "first_ms": t.first,
            "last": _time(t.last),
            "last_ms": t.last,
            "bars": (t.last - t.first) // step + 1,
        },
        "rows": sum(i.rows for i in t.instruments.values()),
        "gaps": sum(i.gaps for i in t.instruments.values()),
        "missing": sum(i.missing for i in t.instruments.values()),
        "files": {k: _file(f) for k, f in t.files.items()},
        "instruments": {k: _instrument(i) for k, i in t.instruments.items()},
    }


def dumps(manifest: Manifest, steps: Mapping[str, int]) -> bytes:
    """The manifest's bytes: sorted keys, one-space indent, trailing newline (deterministic).

    `steps` gives each timeframe's bar length in ms (for the bar count).
    """
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "okx_collector_version": manifest.version,
        "files": {k: _file(f) for k, f in manifest.files.items()},
        "timeframes": {
            name: _timeframe(name, t, steps[name]) for name, t in manifest.timeframes.items()
        },
    }
    return (json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n").encode()


# -- from JSON --------------------------------------------------------------------------------


def _parse_file(d: Any) -> FileEntry:
    return FileEntry(int(d["bytes"]), str(d["sha256"]))


def _parse_instrument(d: Any) -> InstrumentEntry:
    f = d["funding"]
    funding = (
        None
        if f is None
        else FundingEntry(
            str(f["source"]),
            int(f["rows"]),
            int(f["first_ms"]),
            int(f["last_ms"]),
            str(f["sha256"]),
        )
    )
    months = {
        str(k): MonthSummary(
            int(m["rows"]), int(m["first_ms"]), int(m["last_ms"]), int(m["gaps"]), str(m["sha256"])
        )
        for k, m in d["months"].items()
    }
    return InstrumentEntry(
        first=int(d["first_ms"]),
        last=int(d["last_ms"]),
        start_index=int(d["start_index"]),
        bars=int(d["bars"]),
        rows=int(d["rows"]),
        gaps=int(d["gaps"]),
        months=months,
        funding=funding,
        files={str(k): _parse_file(v) for k, v in d["files"].items()},
        derived={str(k): _parse_file(v) for k, v in (d.get("derived") or {}).items()},
    )


def _parse_timeframe(d: Any) -> TimeframeEntry:
    cal = d["calendar"]
    return TimeframeEntry(
        freq=str(d["freq"]),
        store=str(d["store"]),
        first=int(cal["first_ms"]),
        last=int(cal["last_ms"]),
        files={str(k): _parse_file(v) for k, v in d["files"].items()},
        instruments={str(k): _parse_instrument(v) for k, v in d["instruments"].items()},
    )


def loads(data: bytes) -> Manifest:
    """Parse a manifest; `NotOurs` if it is not ours, `StaleManifest` if it cannot be reused."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise NotOurs(f"manifest.json is not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise NotOurs(f'manifest.json has no "format": "{FORMAT}"')
    if doc.get("format_version") != FORMAT_VERSION:
        raise StaleManifest(f"format version {doc.get('format_version')!r} != {FORMAT_VERSION}")
    try:
        return Manifest(
            version=str(doc["okx_collector_version"]),
            timeframes={str(k): _parse_timeframe(v) for k, v in doc["timeframes"].items()},
            files={str(k): _parse_file(v) for k, v in doc["files"].items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StaleManifest(f"manifest.json is damaged ({exc!r})") from exc
