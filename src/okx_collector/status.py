"""`status`: coverage of every stored series (first, last, rows, gaps, age), as a table or JSON.

Honest by construction (DESIGN.md §5.5): every interior gap is listed, nothing is inferred as
present. Candle gaps are counted in candles; funding gaps against the funding interval inferred
from the data (the median spacing), since OKX sets it per instrument (1h, 2h, 4h or 8h).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from okx_collector.store import Store
from okx_collector.store.coverage import (
    Coverage,
    Gap,
    candle_coverage,
    coverage,
    funding_coverage,
    with_lost_start,
)
from okx_collector.store.lifecycle import read_delisted
from okx_collector.store.schema import OPEN_INTEREST, TIMEFRAME_KINDS
from okx_collector.timeframes import Timeframe

JSON_VERSION = 1
SeriesKind = Literal["candles", "funding", "mark_candles", "index_candles", "open_interest"]
# How a series of each kind is named in the table: `BTC-USDT-SWAP 1m mark`.
_SUFFIX = {"mark_candles": " mark", "index_candles": " index", "open_interest": " oi"}


@dataclass(frozen=True, slots=True)
class SeriesStatus:
    """Coverage of one series at exchange time `now_ms`."""

    kind: SeriesKind
    inst_id: str
    timeframe: str | None  # candle timeframe name; None for funding
    now_ms: int  # the exchange time the ages are measured at
    coverage: Coverage
    delisted_ms: int | None = None  # when the collector found OKX no longer lists it

    @property
    def name(self) -> str:
        if self.kind == "funding":
            return f"{self.inst_id} funding"
        return f"{self.inst_id} {self.timeframe}{_SUFFIX.get(self.kind, '')}"


def collect_status(
    store: Store,
    now_ms: int,
    wanted: Callable[[str, str | None], bool] = lambda inst_id, tf: True,
) -> list[SeriesStatus]:
    """Coverage of every candle series, then every settled-funding series, then the mark,
    index and open-interest series, in sorted order; only those `wanted(inst_id, timeframe
    name or None for funding)` accepts. Open interest is judged at bar closes: a row is due at
    each close (`ts` is the instant), its age counted from it."""
    out: list[SeriesStatus] = []
    delisted = read_delisted(store.data_dir)
    for inst_id, tf_name in store.list_candle_series():
        if not wanted(inst_id, tf_name):
            continue
        tf = Timeframe.parse(tf_name)
        ts = store.candle_timestamps(inst_id, tf)
        cov = with_lost_start(candle_coverage(ts, tf, now_ms), store.expected_first_ts(inst_id, tf))
        out.append(SeriesStatus("candles", inst_id, tf.name, now_ms, cov, delisted.get(inst_id)))
    for inst_id in store.list_funding_series():
        if not wanted(inst_id, None):
            continue
        cov = funding_coverage(store.funding_times(inst_id), now_ms)
        out.append(SeriesStatus("funding", inst_id, None, now_ms, cov, delisted.get(inst_id)))
    for kind in TIMEFRAME_KINDS:
        for series_id, tf_name in store.list_kind_series(kind):
            if not wanted(series_id, tf_name):
                continue
            tf = Timeframe.parse(tf_name)
            ts = store.kind_timestamps(kind, series_id, tf)
            found = coverage(ts, tf.ms, now_ms, 0 if kind is OPEN_INTEREST else tf.ms)
            name: SeriesKind = kind.name  # type: ignore[assignment]  # one of TIMEFRAME_KINDS
            out.append(
                SeriesStatus(name, series_id, tf.name, now_ms, found, delisted.get(series_id))
            )
    return out


# -- formatting ---------------------------------------------------------------------------------


def iso(ms: int | None) -> str | None:
    """`2026-01-01T00:00:00Z` (with milliseconds only when there are some)."""
    if ms is None:
        return None
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    spec = "seconds" if ms % 1000 == 0 else "milliseconds"
    return dt.isoformat(timespec=spec).replace("+00:00", "Z")


def human_duration(ms: int | None) -> str:
    """A short duration: `45s`, `12m`, `3h 15m`, `2d 4h`; `-5m` for the future."""
    if ms is None:
        return "—"
    if ms < 0:
        return "-" + human_duration(-ms)
    secs = ms // 1000
    days, rem = divmod(secs, 86_400)
    hours, rem = divmod(rem, 3_600)
    mins, secs = divmod(rem, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {mins}m" if mins else f"{hours}h"
    if mins:
        return f"{mins}m {secs}s" if secs else f"{mins}m"
    return f"{secs}s" if secs or ms == 0 else f"{ms}ms"


def _time_format(statuses: list[SeriesStatus]) -> tuple[str, str]:
    """Month-day times when every shown time falls in one year (named in the title)."""
    times = [t for s in statuses for t in (s.coverage.first, s.coverage.last) if t is not None]
    years = {datetime.fromtimestamp(t / 1000, tz=UTC).year for t in times}
    if len(years) == 1:
        return "%m-%d %H:%M", f"times UTC, {years.pop()}"
    return "%Y-%m-%d %H:%M", "times UTC"


def _short_time(ms: int | None, fmt: str) -> str:
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(fmt)


@dataclass(frozen=True, slots=True)
class Clock:
    """Where `now` came from: the exchange's clock, or this machine's when it could not ask."""

    source: Literal["exchange", "local"]
    note: str  # shown in the title: the URL asked, or why the local clock is used


EXCHANGE_CLOCK = Clock("exchange", "ages on exchange time")

# (header, right-aligned, drop order): the table drops the lowest-numbered optional column first
# when the terminal is too narrow, so that no number is ever cut. None: always shown.
_COLUMNS: tuple[tuple[str, bool, int | None], ...] = (
    ("series", False, None),
    ("first", False, 2),
    ("last", False, 4),
    ("rows", True, None),
    ("gaps", True, None),
    ("missing", True, 3),
    ("max gap", True, 1),
    ("age", True, None),
)


def is_stale(s: SeriesStatus) -> bool:
    """More than two bars (or funding intervals) due and not stored; a delisted series ends."""
    return s.delisted_ms is None and s.coverage.behind >= 2


def _age_text(s: SeriesStatus) -> str:
    cov = s.coverage
    if s.delisted_ms is not None:  # ended, not stale: nothing is due any more
        return "delisted " + _short_time(s.delisted_ms, "%Y-%m-%d")
    if cov.age_ms is not None and cov.age_ms < 0:
        return "ahead"  # stored data newer than the clock used: only a wrong local clock does it
    behind = f" (+{cov.behind} due)" if cov.behind else ""
    return human_duration(cov.age_ms) + behind


def _row(s: SeriesStatus, fmt: str) -> list[str]:
    cov = s.coverage
    largest = cov.largest_gap
    gap_text = "—" if largest is None else f"{human_duration(largest.span_ms)} ({largest.missing})"
    return [
        s.name.replace(" funding", " fund"),
        _short_time(cov.first, fmt),
        _short_time(cov.last, fmt),
        f"{cov.rows:,}",
        f"{cov.gap_count:,}",
        f"{cov.missing:,}",
        gap_text,
        _age_text(s),
    ]


def _fitting_columns(rows: list[list[str]], width: int) -> list[int]:
    """Indexes of the columns to show: all that fit in `width`, dropping by priority."""
    widths = [
        max(cell_len(header), *(cell_len(r[i]) for r in rows))
        for i, (header, _, _) in enumerate(_COLUMNS)
    ]
    shown = list(range(len(_COLUMNS)))
    droppable = sorted((order, i) for i, (_, _, order) in enumerate(_COLUMNS) if order is not None)
    for _, index in droppable:
        if sum(widths[i] for i in shown) + len(shown) - 1 <= width:
            break
        shown.remove(index)
    return shown


def render_status(
    statuses: list[SeriesStatus], console: Console, clock: Clock = EXCHANGE_CLOCK
) -> None:
    """Print one row per series: first, last, rows, gaps, missing, largest gap, age (UTC times).

    Numbers are never cut: on a narrow console the least useful columns go first (max gap,
    first, missing, last), and only the series name may wrap.
    """
    if not statuses:
        console.print("no series stored yet")
        return
    fmt, times = _time_format(statuses)
    rows = [_row(s, fmt) for s in statuses]
    shown = _fitting_columns(rows, console.width)
    heads = {_COLUMNS[i][0] for i in shown}
    hidden = [h for h, _, order in sorted(_COLUMNS, key=lambda c: c[2] or 0) if h not in heads]
    table = Table(
        title=f"okx-collector status ({times}; {clock.note})",
        title_justify="left",
        box=None,
        header_style="bold underline",
        padding=(0, 1, 0, 0),
        pad_edge=False,
    )
    for i in shown:
        header, right, _ = _COLUMNS[i]
        if i == 0:  # the only column allowed to wrap: names are not numbers
            table.add_column(header, overflow="fold")
        else:
            cells = max(cell_len(header), *(cell_len(r[i]) for r in rows))
            table.add_column(
                header, justify="right" if right else "left", no_wrap=True, min_width=cells
            )
    for s, row in zip(statuses, rows, strict=True):
        problem = s.coverage.gap_count or (s.coverage.behind and s.delisted_ms is None)
        table.add_row(*(row[i] for i in shown), style="red" if problem else None)
    console.print(table)
    if hidden:
        console.print(f"(no room for {', '.join(hidden)}: see --json)")


# -- JSON ---------------------------------------------------------------------------------------


def _gap_json(g: Gap) -> dict[str, Any]:
    return {
        "start_ms": g.start,
        "start": iso(g.start),
        "end_ms": g.end,
        "end": iso(g.end),
        "missing": g.missing,
    }


def status_to_dict(s: SeriesStatus) -> dict[str, Any]:
    """One series as plain JSON types, with stable keys (times both in ms and ISO UTC)."""
    cov = s.coverage
    largest = cov.largest_gap
    return {
        "series": s.name,
        "kind": s.kind,
        "inst_id": s.inst_id,
        "timeframe": s.timeframe,
        "interval_ms": cov.step_ms,
        "now_ms": s.now_ms,
        "now": iso(s.now_ms),
        "first_ms": cov.first,
        "first": iso(cov.first),
        "last_ms": cov.last,
        "last": iso(cov.last),
        "rows": cov.rows,
        "gap_count": cov.gap_count,
        "missing": cov.missing,
        "largest_gap_missing": 0 if largest is None else largest.missing,
        "largest_gap_ms": 0 if largest is None else largest.span_ms,
        "age_ms": cov.age_ms,
        "behind": cov.behind,
        "gaps": [_gap_json(g) for g in cov.gaps],
        "delisted_ms": s.delisted_ms,
        "delisted": iso(s.delisted_ms),
        "stale": is_stale(s),
    }


def status_to_json(statuses: list[SeriesStatus]) -> str:
    """`{"version": 1, "series": [...]}`, keys in a fixed order, for machines."""
    return json.dumps(
        {"version": JSON_VERSION, "series": [status_to_dict(s) for s in statuses]}, indent=2
    )


def status_from_json(text: str) -> list[SeriesStatus]:
    """Parse `status_to_json` output back (the ms fields are authoritative)."""
    doc = json.loads(text)
    if doc.get("version") != JSON_VERSION:
        raise ValueError(f"unsupported status JSON version {doc.get('version')!r}")
    out: list[SeriesStatus] = []
    for d in doc["series"]:
        gaps = tuple(Gap(g["start_ms"], g["end_ms"], g["missing"]) for g in d["gaps"])
        cov = Coverage(
            d["first_ms"], d["last_ms"], d["rows"], d["interval_ms"], gaps, d["age_ms"], d["behind"]
        )
        out.append(
            SeriesStatus(
                d["kind"], d["inst_id"], d["timeframe"], d["now_ms"], cov, d.get("delisted_ms")
            )
        )
    return out
