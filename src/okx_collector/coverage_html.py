"""`status --html`: one self-contained HTML page with a coverage timeline per series.

Pure: `SeriesStatus` values (the same coverage and gaps `status` prints) in, an HTML string out.
The page needs no network: CSS, the SVG timelines and a few lines of filtering script are inline.
Every series gets one compact row on a shared time axis (from the dataset's first item to the
status's `now`), grouped by timeframe under a sticky axis, with the worst series summarised first.

A timeline is drawn in whole pixels: a gap covers at least one pixel (so one missing minute in a
year still shows), and gaps that fall in the same pixels merge into one mark. A series costs about
half a kilobyte of page, plus about 15 bytes per separate gap mark (at most one per two pixels).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from okx_collector.status import SeriesStatus, human_duration
from okx_collector.timeframes import DAY_MS, HOUR_MS, MINUTE_MS, Timeframe

TIMELINE_PX = 740  # timeline width: with the other columns, fits a 1,400 px window
WORST_SHOWN = 12  # rows in the "worst series" summary
TITLED_MARKS = 12  # gap marks per series that get their own hover title
LATE_BARS = 2  # up to two bars due reads as late (amber): a collector a moment behind; more: stale

# Colours, also read back from screenshots by the browser test.
COVERED = "#2e9e5b"
GAP = "#d62728"
BEHIND = "#f5a623"  # due by now but not stored
ENDED = "#9a9a9a"  # after a delisting: nothing more is due
DELISTED = "#202020"  # the moment the delisting was noticed
EMPTY = "#e9e9e9"  # before the series' first item

_TICK_STEPS_MS = (
    MINUTE_MS, 5 * MINUTE_MS, 15 * MINUTE_MS, 30 * MINUTE_MS, HOUR_MS, 3 * HOUR_MS,
    6 * HOUR_MS, 12 * HOUR_MS, DAY_MS, 2 * DAY_MS, 7 * DAY_MS, 14 * DAY_MS,
)  # fmt: skip
_TICK_MONTHS = (1, 2, 3, 6, 12)
_TICK_MIN_PX = 100  # room for one axis label


@dataclass(frozen=True, slots=True)
class _Scale:
    """Maps exchange ms onto whole pixels of a timeline `width` wide."""

    t0: int
    t1: int
    width: int

    def x(self, t: int) -> float:
        return (t - self.t0) / (self.t1 - self.t0) * self.width

    def span(self, start: int, end: int) -> tuple[int, int]:
        """[x0, x1) in pixels for [start, end): at least 1 px, inside the timeline."""
        x0 = min(max(math.floor(self.x(start)), 0), self.width - 1)
        x1 = min(max(math.ceil(self.x(end)), x0 + 1), self.width)
        return x0, x1


def _fmt(ms: int, spec: str = "%Y-%m-%d %H:%M") -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(spec)


def _covered_end(s: SeriesStatus) -> int | None:
    """Where the stored range ends: the last candle's close, or the last settlement."""
    cov = s.coverage
    if cov.last is None:
        return None
    candle_like = s.kind in ("candles", "mark_candles", "index_candles")
    return cov.last + ((cov.step_ms or 0) if candle_like else 0)


def _due(s: SeriesStatus) -> int:
    """Items due by now and not stored (nothing is due after a delisting)."""
    return 0 if s.delisted_ms is not None else s.coverage.behind


def _shortfall(s: SeriesStatus) -> tuple[float, int]:
    """(share of expected items missing, count): how bad a series is, for the summary."""
    lost = s.coverage.missing + _due(s)
    expected = s.coverage.rows + lost
    return (lost / expected if expected else 0.0), lost


def _freshness(s: SeriesStatus) -> tuple[str, str]:
    """(css class, text) for the age column."""
    cov = s.coverage
    if s.delisted_ms is not None:
        return "ended", "delisted " + _fmt(s.delisted_ms, "%Y-%m-%d")
    if cov.age_ms is None:
        return "stale", "empty"
    text = human_duration(cov.age_ms)
    if cov.behind == 0:
        return "ok", text
    return ("late" if cov.behind <= LATE_BARS else "stale"), f"{text} (+{cov.behind:,} due)"


def _rect(x0: int, x1: int, colour: str, title: str | None = None) -> str:
    body = f"<title>{escape(title)}</title>" if title else ""
    end = f">{body}</rect>" if body else "/>"
    return f'<rect x="{x0}" width="{x1 - x0}" height="10" fill="{colour}"{end}'


def _gap_marks(s: SeriesStatus, scale: _Scale) -> Iterable[str]:
    """Red marks for the gaps: one per run of gaps that share pixels, titled with what it holds;
    past `TITLED_MARKS` runs, one untitled path, ~15 bytes a mark (a series missing a candle in
    every few pixels would otherwise cost kilobytes of titles nobody can hover apart)."""
    runs: list[list[int]] = []  # [x0, x1, first gap index, last gap index]
    for i, g in enumerate(s.coverage.gaps):
        x0, x1 = scale.span(g.start, g.end)
        if runs and x0 <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], x1)
            runs[-1][3] = i
        else:
            runs.append([x0, x1, i, i])
    gaps = s.coverage.gaps
    if len(runs) > TITLED_MARKS:
        d = "".join(f"M{x0} 0h{x1 - x0}v10h-{x1 - x0}z" for x0, x1, _, _ in runs)
        title = f"{len(gaps):,} gaps, {s.coverage.missing:,} missing"
        yield f'<path fill="{GAP}" d="{d}"><title>{title}</title></path>'
        return
    for x0, x1, a, b in runs:
        missing = sum(g.missing for g in gaps[a : b + 1])
        what = "gap" if a == b else f"{b - a + 1:,} gaps"
        span = f"{_fmt(gaps[a].start)} to {_fmt(gaps[b].end)}"
        yield _rect(x0, x1, GAP, f"{what}: {span}, {missing:,} missing")


def _timeline(s: SeriesStatus, scale: _Scale) -> str:
    """The SVG bar of one series: stored range, gaps, what is due or ended, the delisting."""
    cov = s.coverage
    parts = [_rect(0, scale.width, EMPTY)]
    end = _covered_end(s)
    if cov.first is not None and end is not None:
        # Nothing is due after the last item yet: the series is complete up to now.
        complete = cov.behind == 0 and s.delisted_ms is None
        x0, x1 = scale.span(cov.first, s.now_ms if complete else end)
        parts.append(_rect(x0, x1, COVERED))
        parts.extend(_gap_marks(s, scale))
        tail_colour = ENDED if s.delisted_ms is not None else BEHIND if cov.behind else None
        if tail_colour is not None and x1 < scale.width:
            parts.append(_rect(x1, scale.width, tail_colour))
    if s.delisted_ms is not None:
        x0, _ = scale.span(s.delisted_ms, s.delisted_ms)
        marker = _rect(x0, min(x0 + 2, scale.width), DELISTED, "delisted " + _fmt(s.delisted_ms))
        parts.append(marker)
    # crispEdges: whole-pixel marks stay solid colour (no anti-aliased blend of red and green).
    svg = f'<svg width="{scale.width}" height="10" shape-rendering="crispEdges">'
    return svg + "".join(parts) + "</svg>"


def _row(s: SeriesStatus, scale: _Scale, label: str, *, row_id: str = "", link: str = "") -> str:
    """One compact line: name, timeline, rows, gaps, missing, age; `link` targets another row."""
    cov = s.coverage
    fresh_class, fresh_text = _freshness(s)
    bad = cov.gap_count > 0 or _due(s) > 0
    span = "no data" if cov.first is None else f"{_fmt(cov.first)} to {_fmt(cov.last or 0)} UTC"
    largest = cov.largest_gap
    largest_text = "" if largest is None else f", largest {human_duration(largest.span_ms)}"
    tip = (
        f"{s.name}: {span}, {cov.rows:,} rows, {cov.gap_count:,} gaps "
        f"({cov.missing:,} missing{largest_text})"
    )
    ident = f' id="{row_id}"' if row_id else ""
    tag, href = ("a", f' href="#{link}"') if link else ("span", "")
    return (
        f'<div class="row{" bad" if bad else ""}"{ident} data-n="{escape(s.name.lower())}">'
        f'<{tag} class="name" title="{escape(tip)}"{href}>{escape(label)}</{tag}>'
        f"{_timeline(s, scale)}"
        f'<span class="num">{cov.rows:,}</span>'
        f'<span class="num{" red" if cov.gap_count else ""}">{cov.gap_count:,}</span>'
        f'<span class="num{" red" if cov.missing else ""}">{cov.missing:,}</span>'
        f'<span class="age {fresh_class}">{escape(fresh_text)}</span></div>'
    )


def _ticks(scale: _Scale) -> list[tuple[int, str]]:
    """Round UTC times along the axis, at least `_TICK_MIN_PX` apart, with their labels."""
    most = max(1, scale.width // _TICK_MIN_PX)
    length = scale.t1 - scale.t0
    for step in _TICK_STEPS_MS:
        if length / step <= most:
            spec = "%Y-%m-%d" if step >= DAY_MS else "%m-%d %H:%M"
            first = -(-scale.t0 // step) * step
            return [(t, _fmt(t, spec)) for t in range(first, scale.t1 + 1, step)]
    start = datetime.fromtimestamp(scale.t0 / 1000, tz=UTC)
    months = next((m for m in _TICK_MONTHS if length / (m * 30 * DAY_MS) <= most), 12)
    years = max(1, math.ceil(length / (365 * DAY_MS) / most)) if months == 12 else 1
    out: list[tuple[int, str]] = []
    index = start.year * 12 + start.month  # the month after the start's (0-based months)
    while True:
        year, month0 = divmod(index, 12)
        t = int(datetime(year, month0 + 1, 1, tzinfo=UTC).timestamp() * 1000)
        if t > scale.t1:
            return out
        if t >= scale.t0 and (month0 % months == 0) and (months < 12 or year % years == 0):
            out.append((t, _fmt(t, "%Y-%m" if months < 12 else "%Y")))
        index += 1


def _axis(scale: _Scale) -> str:
    marks = []
    for t, label in _ticks(scale):
        x = round(scale.x(t))
        anchor = "start" if x < 40 else "end" if x > scale.width - 40 else "middle"
        marks.append(
            f'<line x1="{x}" x2="{x}" y1="13" y2="20"/>'
            f'<text x="{x}" y="10" text-anchor="{anchor}">{escape(label)}</text>'
        )
    return f'<svg class="axis" width="{scale.width}" height="20">{"".join(marks)}</svg>'


def _grid(scale: _Scale) -> str:
    """Faint lines at the axis ticks, down through every row, to read dates off a bar."""
    lines = "".join(
        f'<line x1="{x}.5" x2="{x}.5" y1="0" y2="100%"/>'
        for x in (round(scale.x(t)) for t, _ in _ticks(scale))
        if 0 < x < scale.width  # a line on a bar's first or last pixel would hide its end
    )
    return f'<svg class="grid" width="{scale.width}" shape-rendering="crispEdges">{lines}</svg>'


def _group_key(s: SeriesStatus) -> tuple[int, str]:
    if s.kind == "funding" or s.timeframe is None:
        return (2**62, "funding")
    return (Timeframe.parse(s.timeframe).ms, s.timeframe)


def _summary_line(items: Sequence[SeriesStatus]) -> str:
    gaps = sum(1 for s in items if s.coverage.gap_count)
    due = sum(1 for s in items if _due(s))
    delisted = sum(1 for s in items if s.delisted_ms is not None)
    return (
        f"{len(items):,} series · {gaps:,} with gaps · {due:,} behind · {delisted:,} delisted · "
        f"{sum(s.coverage.rows for s in items):,} rows · "
        f"{sum(s.coverage.missing for s in items):,} missing"
    )


def _worst(statuses: Sequence[SeriesStatus], scale: _Scale, shown: int) -> str:
    ranked = sorted(
        (i for i, s in enumerate(statuses) if _shortfall(s)[1] > 0),
        key=lambda i: (-_shortfall(statuses[i])[0], -_shortfall(statuses[i])[1], i),
    )
    if not ranked:
        return f'<p class="good">All {len(statuses):,} series are complete and up to date.</p>'
    rows = []
    for i in ranked[:shown]:
        s = statuses[i]
        share, _ = _shortfall(s)
        rows.append(_row(s, scale, f"{share:6.1%} {s.name}", link=f"s{i}"))
    more = len(ranked) - shown
    more_text = f"; {more:,} more under “problems only”" if more > 0 else ""
    return (
        f"<h2>Worst series: {len(ranked):,} of {len(statuses):,} lack items (ranked by the share "
        f"missing, in gaps or due){more_text}</h2>"
        f'<div class="series">{_grid(scale)}{"".join(rows)}</div>'
    )


def _legend() -> str:
    items = (
        (COVERED, "stored"),
        (GAP, "gap (≥ 1 px)"),
        (BEHIND, "due, not stored"),
        (ENDED, "after delisting"),
        (DELISTED, "delisting noticed"),
        (EMPTY, "before first item"),
    )
    return " ".join(
        f'<span class="key"><i style="background:{c}"></i>{escape(t)}</span>' for c, t in items
    )


_CSS = """
body{font:12px/1.3 system-ui,sans-serif;margin:0 16px 24px;color:#222;background:#fff}
h1{font-size:17px;margin:12px 0 4px}h2{font-size:13px;margin:14px 0 4px}
.totals{margin:2px 0 6px}.good{color:#2e7d32;font-weight:600}
.head{position:sticky;top:0;background:#fff;z-index:2;padding:4px 0 2px;
border-bottom:1px solid #bbb}
.row,.cols{display:grid;grid-template-columns:200px var(--w) 76px 48px 72px 150px;column-gap:8px;
align-items:center}
.series{position:relative}.grid{position:absolute;top:0;left:208px;height:100%;
pointer-events:none;stroke:rgba(0,0,0,.16)}
.row{height:14px;font:11px/14px ui-monospace,monospace}
.row:nth-child(even){background:#f6f6f6}.row:hover{background:#e4eefc}.row[hidden]{display:none}
.row{scroll-margin-top:80px}.row:target{background:#ffe9a8}a.name{color:#1a4fa0}
.row svg{display:block}.cols{font-weight:600}.num{text-align:right}
.name{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.red,.stale{color:#c62828;font-weight:600}.late{color:#b26a00}.ended{color:#666}
.axis{font:10px sans-serif;fill:#333;stroke:#777}.axis text{stroke:none}
.key{margin-right:12px;white-space:nowrap}.key i{display:inline-block;width:14px;height:9px;
margin-right:4px;vertical-align:-1px}
summary{cursor:pointer;font-weight:600;font-size:13px;margin:10px 0 3px}
#q{width:220px}
"""

_JS = """
const q=document.getElementById('q'),p=document.getElementById('p');
function filter(){const t=q.value.trim().toLowerCase(),only=p.checked;
for(const r of document.querySelectorAll('.groups .row')){
r.hidden=(t!==''&&!r.dataset.n.includes(t))||(only&&!r.classList.contains('bad'));}}
q.addEventListener('input',filter);p.addEventListener('change',filter);
"""


def render_coverage_html(
    statuses: Sequence[SeriesStatus],
    *,
    source: str = "",
    width: int = TIMELINE_PX,
    worst: int = WORST_SHOWN,
) -> str:
    """The whole page for `statuses` (as `collect_status` returns them); `source` names the data."""
    where = f" of {escape(source)}" if source else ""
    head = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>okx-collector '
        f"coverage{where}</title><style>{_CSS}</style></head><body>"
        f"<h1>okx-collector coverage{where}</h1>"
    )
    if not statuses:
        return head + "<p>No series stored yet.</p></body></html>"
    now = max(s.now_ms for s in statuses)
    firsts = [s.coverage.first for s in statuses if s.coverage.first is not None]
    ends = [e for s in statuses if (e := _covered_end(s)) is not None]
    t0 = min(firsts, default=now)
    t1 = max([now, *ends])
    scale = _Scale(t0, t1 if t1 > t0 else t0 + MINUTE_MS, width)
    groups: dict[tuple[int, str], list[int]] = {}
    for i, s in enumerate(statuses):
        groups.setdefault(_group_key(s), []).append(i)
    body = [
        f'<p class="totals">{_summary_line(statuses)} · span {_fmt(t0)} to {_fmt(scale.t1)} UTC '
        f"· ages at {_fmt(now)} UTC</p>",
        _worst(statuses, scale, worst),
        '<div class="head"><div>'
        '<input id="q" type="search" placeholder="filter by name, e.g. BTC-USDT"> '
        '<label><input id="p" type="checkbox"> problems only</label> &nbsp; '
        f"{_legend()}</div>"
        f'<div class="cols" style="--w:{width}px"><span>series</span>{_axis(scale)}'
        '<span class="num">rows</span><span class="num">gaps</span>'
        '<span class="num">missing</span><span>age</span></div></div>'
        '<div class="groups">',
    ]
    for (_, name), members in sorted(groups.items()):
        items = [statuses[i] for i in members]
        rows = "".join(
            _row(statuses[i], scale, statuses[i].inst_id, row_id=f"s{i}") for i in members
        )
        body.append(
            f"<details open><summary>{escape(name)}: {_summary_line(items)}</summary>"
            f'<div class="series">{_grid(scale)}{rows}</div></details>'
        )
    body.append("</div>")
    style = f'<div style="--w:{width}px">'
    return head + style + "".join(body) + f"</div><script>{_JS}</script></body></html>"
