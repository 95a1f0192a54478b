"""The coverage page as HTML: what it says, what it draws, and that names cannot break it."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from coverage_fixtures import START, demo_dataset
from okx_collector.coverage_html import (
    BEHIND,
    COVERED,
    DELISTED,
    ENDED,
    GAP,
    TIMELINE_PX,
    TITLED_MARKS,
    render_coverage_html,
)
from okx_collector.status import SeriesStatus, collect_status
from okx_collector.store.coverage import Coverage, Gap
from okx_collector.timeframes import DAY_MS, MINUTE_MS
from test_cli import assert_one_line_error, run_cli

RECT = re.compile(r'<rect x="(\d+)" width="(\d+)" height="10" fill="(#[0-9a-f]{6})"')


def rects(svg_row: str) -> list[tuple[int, int, str]]:
    return [(int(x), int(w), fill) for x, w, fill in RECT.findall(svg_row)]


def row_of(page: str, row_id: str) -> str:
    """The HTML of the row with `id` (one row per line would be nicer; rows end with </div>)."""
    start = page.index(f'id="{row_id}"')
    return page[start : page.index("</div>", start)]


def series(inst_id: str, cov: Coverage, now_ms: int, delisted: int | None = None) -> SeriesStatus:
    return SeriesStatus("candles", inst_id, "1m", now_ms, cov, delisted)


def test_the_demo_page_names_every_series_and_draws_its_gap_stale_tail_and_delisting(
    tmp_path: Path,
) -> None:
    demo = demo_dataset(tmp_path / "data")
    statuses = collect_status(demo.store, demo.now_ms)
    page = render_coverage_html(statuses, source=str(tmp_path / "data"))
    assert page.startswith("<!DOCTYPE html>") and page.count("<html") == 1
    # Self-contained: no link, script or image is fetched from anywhere.
    assert not re.search(r"(src|href)=\"(?!#)", page) and "http" not in page
    assert "15 series · 1 with gaps · 1 behind · 3 delisted · 14,678 rows · 180 missing" in page
    for group in ("1m: 5 series", "15m: 5 series", "funding: 5 series"):
        assert f"<summary>{group}" in page
    assert "Worst series: 2 of 15" in page
    worst = page[page.index("Worst series") : page.index('class="head"')]
    assert worst.index("ADA-USDT 15m") < worst.index("ETH-USDT 1m")  # 12.5% before 6.2%
    names = [s.name for s in statuses]
    eth = row_of(page, f"s{names.index('ETH-USDT 1m')}")
    gap_start = datetime.fromtimestamp(demo.gap.start / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    assert f"gap: {gap_start} to" in eth and "180 missing" in eth
    span = 2 * DAY_MS
    (gx, gw) = next((x, w) for x, w, fill in rects(eth) if fill == GAP)
    assert gx == (demo.gap.start - START) * TIMELINE_PX // span
    assert gw == -(-(demo.gap.stop - START) * TIMELINE_PX // span) - gx
    ada = row_of(page, f"s{names.index('ADA-USDT 15m')}")
    assert BEHIND in ada and "6h (+24 due)" in ada and 'class="age stale"' in ada
    dot = row_of(page, f"s{names.index('DOT-USDT 15m')}")
    assert ENDED in dot and DELISTED in dot and "delisted 2026-11-29" in dot
    btc = row_of(page, f"s{names.index('BTC-USDT 1m')}")
    assert rects(btc)[1] == (0, TIMELINE_PX, COVERED)  # complete up to now: one green bar
    assert 'class="age ok">0s<' in btc


def test_a_one_minute_gap_in_a_year_is_still_a_pixel_wide() -> None:
    year = 365 * DAY_MS
    t0 = START
    gap = Gap(t0 + 200 * DAY_MS, t0 + 200 * DAY_MS + MINUTE_MS, 1)
    cov = Coverage(t0, t0 + year - MINUTE_MS, year // MINUTE_MS - 1, MINUTE_MS, (gap,), 0, 0)
    page = render_coverage_html([series("BTC-USDT", cov, t0 + year)])
    marks = [r for r in rects(row_of(page, "s0")) if r[2] == GAP]
    assert marks == [(int(200 / 365 * TIMELINE_PX), 1, GAP)]


def test_gaps_sharing_pixels_merge_so_the_page_stays_small() -> None:
    t0, step = START, MINUTE_MS
    gaps = tuple(Gap(t0 + (3 * i + 1) * step, t0 + (3 * i + 2) * step, 1) for i in range(20_000))
    last = t0 + 60_000 * step
    cov = Coverage(t0, last, 40_001, step, gaps, 0, 0)
    page = render_coverage_html([series("BUSY-USDT", cov, last + step)])
    marks = [r for r in rects(row_of(page, "s0")) if r[2] == GAP]
    assert len(marks) == 1 and marks[0][:2] == (0, TIMELINE_PX)  # one run of 20,000 gaps
    assert "20,000 gaps" in page and "20,000 missing" in page
    assert len(page) < 20_000


def test_scattered_gaps_cost_bytes_per_mark_not_a_title_each() -> None:
    t0, step, n = START, MINUTE_MS, 100_000
    # Every 400th minute missing: 250 gaps, each its own mark, three pixels apart.
    gaps = tuple(Gap(t0 + i * step, t0 + (i + 1) * step, 1) for i in range(50, n - 50, 400))
    cov = Coverage(t0, t0 + (n - 1) * step, n - len(gaps), step, gaps, 0, 0)
    row = row_of(render_coverage_html([series("THIN-USDT", cov, t0 + n * step)]), "s0")
    assert f"{len(gaps):,} gaps, {len(gaps):,} missing" in row
    path = re.search(r'<path fill="#d62728" d="([^"]+)"', row)
    assert path is not None
    marks = re.findall(r"M(\d+) 0h(\d+)v10h-\d+z", path[1])
    assert len(marks) == len(gaps) > TITLED_MARKS and all(int(w) >= 1 for _, w in marks)
    assert len(row) < 25 * len(marks) + 1_000


def test_names_are_escaped_everywhere() -> None:
    evil = '<script>alert("x")</script>&'
    cov = Coverage(START, START + 10 * MINUTE_MS, 10, MINUTE_MS, (), 0, 5)
    page = render_coverage_html([series(evil, cov, START + 20 * MINUTE_MS)], source="<b>dir</b>")
    assert evil not in page and "<b>dir</b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    assert page.count("<script>") == 1  # only the page's own filter


def test_an_empty_store_says_so() -> None:
    assert "No series stored yet." in render_coverage_html([])


def test_status_html_writes_the_page_and_bad_paths_are_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    demo_dataset(data)
    out = tmp_path / "coverage.html"
    result = run_cli("status", "--data-dir", str(data), "--html", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and f"wrote {out} (15 series" in result.stderr
    page = out.read_text()
    assert "ETH-USDT" in page and "</html>" in page
    both = run_cli("status", "--data-dir", str(data), "--json", "--html", str(out))
    assert both.returncode == 0 and len(json.loads(both.stdout)["series"]) == 15
    missing = run_cli("status", "--data-dir", str(data), "--html", str(tmp_path / "no" / "x.html"))
    assert_one_line_error(missing, 2, "--html", "no folder")
