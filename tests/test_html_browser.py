"""The HTML report in a real headless Chromium (Playwright driving the system's browser).

Nothing is downloaded: Playwright's Python package drives the ``chromium``
found on PATH (Debian's package; ``make browser`` installs it) or at
$LOSSCMP_CHROMIUM. Without one the tests are skipped with the reason; on CI
(``CI`` set) a missing browser fails instead, so CI cannot pass without them.
Checks: no console errors, no request but the file itself, the table's numbers
are summary.csv's, headers sort, the page works without JavaScript, and a
screenshot is drawn (kept at $LOSSCMP_SCREENSHOT when set).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from run_fixtures import write_run

from losscmp.render.cells import table_columns, table_extras

pytestmark = pytest.mark.browser

QUALITY = {"dice": 0.80, "focal": 0.62, "tversky": 0.78, "bce": 0.70}
DIVERGED = {("tversky", 0): 2, ("tversky", 1): 2, ("tversky", 2): 2, ("focal", 1): 3}


def _chromium() -> str:
    path = os.environ.get("LOSSCMP_CHROMIUM") or shutil.which("chromium")
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "Playwright is not installed (pip install -e '.[test]')"
    if reason is None and not path:
        reason = "no chromium on PATH (make browser installs Debian's package)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the browser test: {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    # Chromium refuses to run as root with its sandbox on (CI and containers run as root).
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=args)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def report_page(cli, tmp_path_factory):
    """A demo-like run (four losses, three seeds, a diverged loss) reported to HTML."""
    root = tmp_path_factory.mktemp("html")
    run_dir = write_run(root, quality=QUALITY, diverged=DIVERGED, image_size=48)
    page = root / "report.html"
    result = cli("report", run_dir, "--html", page)
    assert result.exit_code == 0, result.output
    return page, pd.read_csv(run_dir / "summary.csv")


class Visit:
    """A page opened in a fresh context, with its console errors and requests recorded."""

    def __init__(self, browser, path: Path, javascript: bool = True) -> None:
        self.context = browser.new_context(
            viewport={"width": 1366, "height": 800}, java_script_enabled=javascript
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else 0)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.url = path.as_uri()
        self.page.goto(self.url, wait_until="load")

    def losses(self) -> list[str]:
        rows = self.page.locator("table.comparison tbody tr")
        return [rows.nth(i).get_attribute("data-loss") for i in range(rows.count())]

    def sort_by(self, title: str) -> None:
        self.page.locator("table.comparison thead th button", has_text=title).click()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def visit(browser, report_page):
    opened = Visit(browser, report_page[0])
    yield opened
    opened.close()


def test_opens_without_errors_or_network_requests(visit):
    assert visit.errors == []
    assert visit.requests == [visit.url]
    images = visit.page.locator("figure img")
    assert images.count() == 2
    for i in range(images.count()):  # decoded, not broken
        assert images.nth(i).evaluate("image => image.naturalWidth") > 300


def test_the_table_shows_summary_csv(visit, report_page):
    _, summary = report_page
    rows = {row["loss"]: row for row in summary.to_dict("records")}
    columns = table_columns("dice", table_extras(summary, "dice"))
    headers = visit.page.locator("table.comparison thead th")
    assert [headers.nth(i).inner_text() for i in range(headers.count())] == [
        column.title for column in columns
    ]
    body = visit.page.locator("table.comparison tbody tr")
    assert body.count() == len(summary)
    for i in range(body.count()):
        row = rows[body.nth(i).get_attribute("data-loss")]
        cells = body.nth(i).locator("td")
        texts = [cells.nth(j).inner_text() for j in range(cells.count())]
        assert texts == [column.text(row) for column in columns]
    # the full-precision values behind the rounded text are the CSV's own
    headline = body.locator("td:nth-child(3)")
    for i in range(body.count()):
        loss = body.nth(i).get_attribute("data-loss")
        value = headline.nth(i).get_attribute("data-sort")
        expected = rows[loss]["score_mean"]
        assert (value == "" and pd.isna(expected)) or float(value) == expected


def test_headers_sort_the_rows(visit, report_page):
    _, summary = report_page
    ranked = visit.losses()
    assert ranked == ["dice", "bce", "focal", "tversky"]  # rank order; tversky diverged
    visit.sort_by("loss")
    assert visit.losses() == sorted(ranked)
    visit.sort_by("loss")
    assert visit.losses() == sorted(ranked, reverse=True)
    visit.sort_by("Dice test")  # ascending, the diverged loss (no score) last
    scored = summary.dropna(subset=["score_mean"]).sort_values("score_mean")
    assert visit.losses() == [*scored["loss"], "tversky"]
    visit.sort_by("Dice test")
    assert visit.losses() == [*reversed(scored["loss"].tolist()), "tversky"]
    header = visit.page.locator("table.comparison thead th", has_text="Dice test")
    assert header.get_attribute("aria-sort") == "descending"
    assert visit.errors == []


def test_without_javascript_the_table_is_in_rank_order(browser, report_page):
    opened = Visit(browser, report_page[0], javascript=False)
    try:
        assert opened.losses() == ["dice", "bce", "focal", "tversky"]
        assert opened.page.locator("table.comparison thead button").count() == 0
        problems = opened.page.inner_text("section.problems")
        tversky = "tversky on synthetic diverged (non-finite loss; left out of every mean): "
        assert f"{tversky}all 3 seeds at epoch 2." in problems
    finally:
        opened.close()


def test_screenshot(visit, tmp_path):
    path = tmp_path / "report.png"
    visit.page.screenshot(path=str(path), full_page=True)
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert width == 1366 and height > 1500
    assert len(colours) > 50  # drawn, not a blank page
    keep = os.environ.get("LOSSCMP_SCREENSHOT")
    if keep:
        shutil.copy(path, keep)


def test_a_long_dataset_spec_wraps_instead_of_widening_the_page(browser, cli, tmp_path):
    """A dataset spec has no spaces to break at: as the heading of its block under
    'What was run' it ran 115 px past its column and gave a 1280-pixel laptop screen a
    horizontal scrollbar (the smoke config's synthetic(fg_fraction=...,n_test=16))."""
    spec = "synthetic(fg_fraction=0.05,n_train=48,n_val=16,n_test=16)"
    run_dir = write_run(tmp_path, quality=QUALITY, datasets=[spec], image_size=48)
    page = tmp_path / "report.html"
    assert cli("report", run_dir, "--html", page).exit_code == 0
    opened = Visit(browser, page)
    try:
        opened.page.set_viewport_size({"width": 1280, "height": 800})
        width = opened.page.evaluate("document.documentElement.clientWidth")
        assert opened.page.evaluate("document.documentElement.scrollWidth") == width
        heading = opened.page.locator("h4", has_text="Dataset")
        assert heading.evaluate("h => h.scrollWidth <= h.clientWidth")
    finally:
        opened.close()


def test_the_dials_best_cells_are_bold_as_its_caption_says(browser, cli, tmp_path):
    """'bold = best at that fraction': the page draws those cells bold, and no other."""
    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.05, 0.2)]
    run_dir = write_run(tmp_path, quality=QUALITY, datasets=datasets, panel=False)
    page = tmp_path / "report.html"
    assert cli("report", run_dir, "--html", page).exit_code == 0
    opened = Visit(browser, page)
    try:
        dial = opened.page.locator('table[aria-label="Imbalance dial"]')
        assert "bold = best at that fraction" in opened.page.inner_text(
            "section:has(table[aria-label='Imbalance dial']) p.caption"
        )
        weights = dial.locator("tbody td.num").evaluate_all(
            "cells => cells.map(c => [c.classList.contains('strong'),"
            " Number(getComputedStyle(c).fontWeight)])"
        )
        assert len(weights) == 12
        assert sum(best for best, _ in weights) == 3  # one best a fraction
        assert all((weight >= 700) == best for best, weight in weights)
    finally:
        opened.close()


def test_the_headers_of_a_long_table_stay_in_view_down_to_its_last_row(browser, cli, tmp_path):
    """23 losses (--losses all): the comparison's column titles scrolled away before its
    last rows, which showed 20 columns of numbers with no name over them."""
    quality = {f"loss{index:02d}": 0.5 + index / 100 for index in range(23)}
    run_dir = write_run(tmp_path, quality=quality, seeds=(0, 1), panel=False, image_size=16)
    page = tmp_path / "report.html"
    assert cli("report", run_dir, "--html", page).exit_code == 0
    opened = Visit(browser, page)
    try:
        # a laptop's 768 pixels less the browser's bars: the table is taller than that
        opened.page.set_viewport_size({"width": 1366, "height": 600})
        table = opened.page.locator("table.comparison")
        table.evaluate("t => t.closest('.scroll').scrollIntoView()")
        last = table.locator("tbody tr").last
        last.scroll_into_view_if_needed()
        header = table.locator("thead th").first.bounding_box()
        row = last.bounding_box()
        assert -1 < header["y"] < row["y"] and row["y"] + row["height"] <= 600, (header, row)
        assert opened.errors == []
    finally:
        opened.close()
