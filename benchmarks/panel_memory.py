"""A prediction panel's peak memory and time for large images (64, 256, 512 px).

    python benchmarks/panel_memory.py                      # this checkout
    python benchmarks/panel_memory.py --against ../old     # and another, sides alternated

Runs are made with the tests' fixture (``tests/run_fixtures.write_run``, no training):
one seed, 4 test images of each size, 3 or 23 losses. Each panel is built and turned
into the page's PNG (as ``report_page.py``'s panel timer does) in a fresh process per
checkout and measure, sides alternated, ``--repeats`` times. Printed per size and loss
count, medians: the seconds, the peak RSS above the process's RSS before the panel
(Linux's VmHWM, reset first: numpy's arrays and Agg's buffers alike) and tracemalloc's
peak (Python and numpy allocations only), in a second process.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Time and peak RSS of one panel (matplotlib imported first); the run once read.
RSS_TIMER = """
import sys, time
from losscmp import summary
from losscmp.render import figures, html
import matplotlib.figure, matplotlib.backends.backend_agg
results = summary.load_run(sys.argv[1])
shown = summary.at_chosen_rates(results, summary.summarize(results, "dice"))
(dataset,) = summary.dataset_order(shown)
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
with open("/proc/self/clear_refs", "w") as reset:
    reset.write("5")  # VmHWM back to the RSS now
before = status("VmRSS:")
started = time.perf_counter()
html._figure(figures.prediction_panel(shown, dataset).figure, "")
print(time.perf_counter() - started, status("VmHWM:") - before)
"""

TRACEMALLOC_TIMER = """
import sys, tracemalloc
from losscmp import summary
from losscmp.render import figures, html
import matplotlib.figure, matplotlib.backends.backend_agg
results = summary.load_run(sys.argv[1])
shown = summary.at_chosen_rates(results, summary.summarize(results, "dice"))
(dataset,) = summary.dataset_order(shown)
tracemalloc.start()
html._figure(figures.prediction_panel(shown, dataset).figure, "")
print(tracemalloc.get_traced_memory()[1])
"""


def make_run(root: Path, size: int, losses: int) -> Path:
    sys.path[:0] = [str(REPO / "tests"), str(REPO)]
    from run_fixtures import write_run

    quality = {f"loss{index:02d}": 0.5 + index / 100 for index in range(losses)}
    return write_run(
        root / f"{size}px-{losses}", quality=quality, seeds=(0,), n_images=4, image_size=size
    )


def measured(timer: str, code: Path, run_dir: Path) -> list[float]:
    command = [sys.executable, "-c", timer, str(run_dir)]
    done = subprocess.run(command, cwd=code, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{code}: {done.stderr[-2000:]}")
    return [float(value) for value in done.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another checkout, measured alike")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--losses", type=int, nargs="+", default=[3, 23])
    args = parser.parse_args()
    sides = {"this": REPO} | ({"against": args.against.resolve()} if args.against else {})
    print("size losses side    seconds  peak RSS MB  tracemalloc MB")
    with tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            for losses in args.losses:
                run_dir = make_run(Path(scratch), size, losses)
                found = {side: [] for side in sides}
                for repeat in range(args.repeats):
                    order = list(sides) if repeat % 2 == 0 else list(reversed(sides))
                    for side in order:
                        seconds, rss = measured(RSS_TIMER, sides[side], run_dir)
                        (traced,) = measured(TRACEMALLOC_TIMER, sides[side], run_dir)
                        found[side].append((seconds, rss / 2**20, traced / 2**20))
                for side, values in found.items():
                    seconds, rss, traced = (statistics.median(v) for v in zip(*values, strict=True))
                    print(
                        f"{size:4d} {losses:6d} {side:7s} {seconds:7.2f} {rss:12.1f} {traced:15.1f}"
                    )


if __name__ == "__main__":
    main()
