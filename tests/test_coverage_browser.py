"""The coverage page in a real browser: headless Chromium renders it, the screenshot shows it.

Each timeline is found in the screenshot as a band of its colours, in page order, and checked
where the data says it should be: the stored range, the gap at its time, the stale tail, the
delisting. Needs Debian's `chromium` (.ci/run installs it).
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from coverage_fixtures import START, demo_dataset, thousand_series
from okx_collector.coverage_html import (
    BEHIND,
    COVERED,
    DELISTED,
    ENDED,
    GAP,
    TIMELINE_PX,
    render_coverage_html,
)
from okx_collector.status import collect_status
from okx_collector.timeframes import DAY_MS, HOUR_MS
from png_helpers import Image, near, read_png

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no /usr/bin/chromium: install Debian's chromium package (.ci/run does)",
)
BAR_COLOURS = near([COVERED, GAP, BEHIND, ENDED])
STORED = near([COVERED])
WINDOW = (1400, 900)


def chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--disable-gpu", "--no-sandbox",
         f"--user-data-dir={tmp_path / 'profile'}", *args, page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def screenshot(page: Path, tmp_path: Path) -> tuple[Image, float]:
    """The page as a 1,400 x 900 window shows it, and how long Chromium took."""
    out = tmp_path / f"{page.stem}.png"
    started = time.monotonic()
    result = chromium(page, tmp_path, f"--screenshot={out}", "--window-size={},{}".format(*WINDOW))
    seconds = time.monotonic() - started
    assert result.returncode == 0 and out.exists(), result.stderr[-2000:]
    return read_png(out), seconds


def bands(img: Image) -> list[int]:
    """The middle line (y) of each timeline bar, top to bottom: runs of lines with >= 100
    pixels of the bar colours."""
    rows = [sum(p in BAR_COLOURS for p in img.line(y)) >= 100 for y in range(img.height)]
    out, start = [], None
    for y, hit in enumerate([*rows, False]):
        if hit and start is None:
            start = y
        elif not hit and start is not None:
            out.append((start + y - 1) // 2)
            start = None
    return out


def timeline(img: Image, ys: list[int]) -> range:
    """The columns the bars span (where any band shows the stored colour)."""
    green = [x for y in ys for x, p in enumerate(img.line(y)) if p in STORED]
    return range(min(green), max(green) + 1)


def xs(img: Image, y: int, colour: str, columns: range) -> list[int]:
    """Where `colour` shows on line `y` within the timeline `columns` (text outside the bars
    has anti-aliased pixels of every grey)."""
    wanted = near([colour])
    return [x for x, p in zip(columns, img.line(y, columns), strict=True) if p in wanted]


def test_the_demo_page_shows_every_timeline_with_its_gap_tail_and_delisting(
    tmp_path: Path,
) -> None:
    demo = demo_dataset(tmp_path / "data")
    page = tmp_path / "demo.html"
    page.write_text(render_coverage_html(collect_status(demo.store, demo.now_ms)))
    img, _ = screenshot(page, tmp_path)
    assert (img.width, img.height) == WINDOW
    ys = bands(img)
    # Worst: ADA 15m, ETH 1m; then 1m, 15m, funding groups of ADA BTC DOT ETH LINK.
    assert len(ys) == 2 + 3 * 5, ys
    bars = timeline(img, ys)
    left, right = bars[0], bars[-1]
    assert len(bars) == TIMELINE_PX  # BTC, ETH, LINK are complete: stored across the span
    btc = xs(img, ys[3], COVERED, bars)
    assert len(btc) >= TIMELINE_PX - 6  # bar the grid lines drawn across

    def at(t: int) -> int:
        return left + (t - START) * TIMELINE_PX // (2 * DAY_MS)

    def only(y: int, colour: str) -> list[int]:
        return xs(img, y, colour, bars)

    for y in (ys[1], ys[5]):  # ETH 1m among the worst and in its group: one red gap
        red = only(y, GAP)
        assert abs(red[0] - at(demo.gap.start)) <= 2 and abs(red[-1] - at(demo.gap.stop)) <= 2
    for y in (ys[0], ys[7]):  # ADA 15m: amber from its last candle to now
        amber = only(y, BEHIND)
        assert abs(amber[0] - at(demo.stale_from)) <= 2 and abs(amber[-1] - right) <= 2
    for y in (ys[4], ys[9], ys[14]):  # DOT: grey after its delisting, with the marker
        assert abs(only(y, DELISTED)[0] - at(demo.delisted_ms)) <= 2
        assert only(y, ENDED)[-1] >= right - 2
    for y in (ys[2], ys[3], ys[6], ys[8], ys[10], ys[11]):  # complete and fresh: green only
        assert not only(y, GAP) and not only(y, BEHIND) and not only(y, ENDED)


@pytest.fixture(scope="module")
def thousand_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, float]:
    """The page of 1,000 series, and the seconds it took to build from their statuses."""
    store, now = thousand_series(tmp_path_factory.mktemp("thousand") / "data")
    statuses = collect_status(store, now)
    assert len(statuses) == 1_000
    started = time.monotonic()
    html = render_coverage_html(statuses)
    return html, time.monotonic() - started


def test_a_thousand_series_render_and_the_screenshot_shows_their_timelines(
    tmp_path: Path, thousand_page: tuple[str, float]
) -> None:
    html, build_seconds = thousand_page
    page = tmp_path / "thousand.html"
    page.write_text(html)
    img, render_seconds = screenshot(page, tmp_path)
    dom = chromium(page, tmp_path, "--dump-dom").stdout
    assert dom.count('<div class="row') == 1_000 + 12  # every series, and the 12 worst
    print(
        f"\n1,000 series: page {len(html) / 1024:.0f} KiB, built in {build_seconds:.2f} s, "
        f"screenshot by Chromium in {render_seconds:.2f} s"
    )
    assert len(html) < 1_000_000 and render_seconds < 60
    ys = bands(img)
    assert len(ys) >= 12 + 30, len(ys)  # the worst, then 1h rows from C000 on, in one window
    bars = timeline(img, ys)
    assert len(bars) == TIMELINE_PX
    rows_1h = ys[12:]

    def only(y: int, colour: str) -> list[int]:
        return xs(img, y, colour, bars)

    assert only(rows_1h[0], GAP) and only(rows_1h[0], BEHIND)  # C000: a gap, stopped early
    assert not only(rows_1h[1], GAP) and not only(rows_1h[1], BEHIND)  # C001: complete
    red = set(only(rows_1h[3], GAP))
    runs = [x for x in red if x - 1 not in red]
    assert len(runs) >= 60  # C003: a gap every 10 hours, each its own red mark
    one_hour = only(rows_1h[7], GAP)  # C007: one missing 1h candle in 30 days, still drawn
    assert 1 <= len(one_hour) <= 2
    assert len(only(rows_1h[14], GAP)) >= TIMELINE_PX * 4 * DAY_MS // (30 * DAY_MS) - 2
    for y in ys[:12]:  # the worst: each has a gap of days
        assert len(only(y, GAP)) > TIMELINE_PX * HOUR_MS // DAY_MS


def test_the_axis_stays_on_top_while_a_thousand_rows_scroll_by(
    tmp_path: Path, thousand_page: tuple[str, float]
) -> None:
    # Scroll far down, then ask the layout where the header and the first group's rows are.
    probe = (
        "<script>window.scrollTo(0, 6000);const b=document.body.dataset;b.scrolled=scrollY;"
        "b.head=Math.round(document.querySelector('.head').getBoundingClientRect().top);"
        "b.row=Math.round(document.getElementById('s0').getBoundingClientRect().top);</script>"
    )
    page = tmp_path / "scrolled.html"
    page.write_text(thousand_page[0].replace("</body>", probe + "</body>"))
    dom = chromium(page, tmp_path, "--window-size=1400,900", "--dump-dom").stdout
    found = dict(re.findall(r'data-(scrolled|head|row)="(-?\d+)"', dom))
    assert found["scrolled"] == "6000"  # the page is that long
    assert found["head"] == "0" and int(found["row"]) < -5000  # rows went up, the axis did not


@pytest.mark.parametrize(
    ("typed", "problems_only", "shown"),
    [
        ("eth", False, ["ETH-USDT", "ETH-USDT", "ETH-USDT-SWAP"]),
        ("", True, ["ETH-USDT", "ADA-USDT"]),
        ("swap", True, []),
    ],
)
def test_the_filter_hides_the_rows_it_does_not_match(
    tmp_path: Path, typed: str, problems_only: bool, shown: list[str]
) -> None:
    demo = demo_dataset(tmp_path / "data")
    html = render_coverage_html(collect_status(demo.store, demo.now_ms))
    # What a user does: type into the box, tick the box; the page's own handlers react.
    act = (
        f"<script>const box=document.getElementById('q');box.value={typed!r};"
        "box.dispatchEvent(new Event('input'));"
        f"if({str(problems_only).lower()})document.getElementById('p').click();</script>"
    )
    page = tmp_path / "filtered.html"
    page.write_text(html.replace("</body>", act + "</body>"))
    dom = chromium(page, tmp_path, "--dump-dom").stdout
    groups = dom[dom.index('<div class="groups">') :]
    visible = re.findall(r'<div class="row[^"]*" id="s\d+" data-n="[^"]*"><span class="name"[^>]*>'
                         r"([^<]+)<", groups)  # fmt: skip
    hidden = groups.count(" hidden=")
    assert sorted(visible) == sorted(shown) and hidden == 15 - len(shown)
