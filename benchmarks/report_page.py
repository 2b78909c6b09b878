"""report.html of a large run: its size, the time to build it, and Chromium's to show it.

    python benchmarks/report_page.py                           # a 345-trial grid, made here
    python benchmarks/report_page.py RUN_DIR ... --against ../old   # run folders, two checkouts

Without run folders, one is made with the tests' fixture (``tests/run_fixtures.write_run``,
no training): 23 losses x 5 seeds x 3 learning rates, 8 epochs, 16 test images of 48 px,
8 of the losses diverged at epoch 2 on every seed and rate. ``losscmp report RUN --html``
runs in a fresh process from each checkout (``--against``: the other one too), sides
alternated, ``--repeats`` times; each page is then opened in headless Chromium (the
system's, as ``tests/test_html_browser.py`` launches it) at 1366x800, five times.
Printed per page: its size and its figures' sizes, the lines of 'What went wrong',
the median build and load times (load: until the load event and two frames drawn), the
page's height and how far down the comparison table starts; and the prediction panels
alone (each dataset's, built and turned into the page's PNG, in a fresh process per
checkout, sides alternated, after matplotlib is imported) and the summary alone
(``summary.summarize`` of the run once read), medians over ``--repeats``.

    python benchmarks/report_page.py --dial --no-browser --against ../old
        # 23 losses x 3 seeds on 3 foreground fractions: three panels; no Chromium
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOSSES = {f"loss{index:02d}": 0.5 + index / 100 for index in range(23)}


def make_grid_run(root: Path) -> Path:
    sys.path[:0] = [str(REPO / "tests"), str(REPO)]
    from run_fixtures import write_run

    diverged = {(loss, seed): 2 for loss in list(LOSSES)[:8] for seed in range(5)}
    return write_run(
        root, quality=LOSSES, seeds=range(5), lrs=[1e-3, 3e-3, 1e-2], diverged=diverged,
        epochs=8, n_images=16, image_size=48,
    )  # fmt: skip


def make_dial_run(root: Path) -> Path:
    """23 losses x 3 seeds on an imbalance dial of 3 foreground fractions (207 trials)."""
    sys.path[:0] = [str(REPO / "tests"), str(REPO)]
    from run_fixtures import write_run

    datasets = [f"synthetic(fg_fraction={f})" for f in (0.01, 0.05, 0.2)]
    return write_run(
        root, quality=LOSSES, datasets=datasets, seeds=range(3), epochs=8, n_images=16,
        image_size=48,
    )  # fmt: skip


# Each dataset's prediction panel as report.html embeds it, timed in the checkout's code.
PANEL_TIMER = """
import sys, time
from losscmp import summary
from losscmp.render import figures, html
import matplotlib.figure, matplotlib.backends.backend_agg
results = summary.load_run(sys.argv[1])
shown = summary.at_chosen_rates(results, summary.summarize(results, "dice"))
for dataset in summary.dataset_order(shown):
    started = time.perf_counter()
    html._figure(figures.prediction_panel(shown, dataset).figure, "")
    print(time.perf_counter() - started)
"""


# The summary alone (summary.summarize: every table's numbers), its run already read.
SUMMARY_TIMER = """
import sys, time
from losscmp import summary
results = summary.load_run(sys.argv[1])
started = time.perf_counter()
summary.summarize(results, "dice")
print(time.perf_counter() - started)
"""


def timed(timer: str, code: Path, run_dir: Path) -> float:
    """Seconds that ``timer`` printed, run with the checkout ``code`` on ``run_dir``."""
    command = [sys.executable, "-c", timer, str(run_dir)]
    done = subprocess.run(command, cwd=code, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{code}: {done.stderr[-2000:]}")
    return sum(float(line) for line in done.stdout.split())


def panel_seconds(code: Path, run_dir: Path) -> float:
    """Seconds the run's prediction panels took (all datasets) with the checkout ``code``."""
    return timed(PANEL_TIMER, code, run_dir)


def build(code: Path, run_dir: Path, page: Path) -> float:
    """Seconds of `losscmp report RUN --html PAGE` run from the checkout ``code``."""
    command = [sys.executable, "-m", "losscmp", "report", str(run_dir), "--html", str(page)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=code, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{code}: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def shown(pages: dict[str, Path]) -> dict[str, dict]:
    """Load time, height and the comparison table's top of each page in Chromium."""
    from playwright.sync_api import sync_playwright

    executable = os.environ.get("LOSSCMP_CHROMIUM") or shutil.which("chromium")
    if not executable:
        raise SystemExit("no chromium on PATH (make browser installs it)")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    figures = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=args)
        for name, page_file in pages.items():
            loads = []
            for _ in range(5):
                context = browser.new_context(viewport={"width": 1366, "height": 800})
                page = context.new_page()
                started = time.perf_counter()
                page.goto(page_file.as_uri(), wait_until="load")
                page.evaluate("() => new Promise(r => requestAnimationFrame(() => "
                              "requestAnimationFrame(r)))")  # fmt: skip
                loads.append(time.perf_counter() - started)
                height = page.evaluate("document.documentElement.scrollHeight")
                top = page.evaluate(
                    "document.querySelector('table.comparison').getBoundingClientRect().top"
                )
                context.close()
            figures[name] = {"load_s": statistics.median(loads), "height": height, "top": top}
        browser.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run folders (default: one made)")
    parser.add_argument("--against", type=Path, help="another checkout, measured in turn")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dial", action="store_true", help="make the 3-dataset dial run")
    parser.add_argument("--no-browser", action="store_true", help="skip Chromium")
    args = parser.parse_args()
    sides = {"this": REPO} | ({"against": args.against.resolve()} if args.against else {})
    with tempfile.TemporaryDirectory() as folder:
        make = make_dial_run if args.dial else make_grid_run
        runs = args.runs or [make(Path(folder) / "made")]
        pages, walls, panels, summaries = {}, {}, {}, {}
        for number, run_dir in enumerate(runs):
            for repeat in range(args.repeats):
                order = list(sides) if repeat % 2 == 0 else list(sides)[::-1]
                for side in order:
                    key = f"{run_dir} ({side})"
                    pages[key] = Path(folder) / f"{number}-{side}.html"
                    walls.setdefault(key, []).append(build(sides[side], run_dir, pages[key]))
                    panels.setdefault(key, []).append(panel_seconds(sides[side], run_dir))
                    seconds = timed(SUMMARY_TIMER, sides[side], run_dir)
                    summaries.setdefault(key, []).append(seconds)
        loads = {} if args.no_browser else shown(pages)
        for key, page_file in pages.items():
            text = page_file.read_text()
            images = re.findall(r'src="data:image/png;base64,([^"]*)"', text)
            sizes = ", ".join(f"{len(data) * 3 / 4 / 1e3:.0f}" for data in images)
            times = ", ".join(f"{wall:.1f}" for wall in walls[key])
            print(f"{key}:")
            print(f"  {len(text.encode()) / 1e3:.0f} kB, figures {sizes} kB; "
                  f"{text.count('<li>')} lines in 'What went wrong'")  # fmt: skip
            print(f"  report --html {statistics.median(walls[key]):.1f} s ({times}); "
                  f"prediction panels {statistics.median(panels[key]):.2f} s "
                  f"({', '.join(f'{s:.2f}' for s in panels[key])})")  # fmt: skip
            print(f"  summary {statistics.median(summaries[key]):.2f} s "
                  f"({', '.join(f'{s:.2f}' for s in summaries[key])})")  # fmt: skip
            if key in loads:
                print(f"  Chromium {loads[key]['load_s']:.2f} s; page {loads[key]['height']} px "
                      f"high, the comparison table {loads[key]['top']:.0f} px down")  # fmt: skip


if __name__ == "__main__":
    main()
