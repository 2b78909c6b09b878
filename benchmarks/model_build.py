"""What building a trial's initial model costs, and what that is in a run of short trials.

    PYTHONPATH=. .venv/bin/python benchmarks/model_build.py             # tiny, small; 1 thread
    PYTHONPATH=. .venv/bin/python benchmarks/model_build.py --runs /path/to/before . --repeats 3

Without ``--runs``: ``build_model`` timed drawn (the kept models forgotten before each
build: what every build cost before they were kept, plus the copy) and copied from the
kept model (every later build of a seed's model in a process), medians of ``--builds``.
On a checkout that keeps nothing, both columns are drawn builds.

With ``--runs BEFORE AFTER``: the same ``losscmp run`` command (``--command``; many short
trials) from each checkout in turn, alternating, ``--repeats`` times each; prints each
side's median wall-clock and CPU seconds (the CPU time is less shaken by other work on a
busy machine) and checks that every run's epochs.csv equals the first's, its ``seconds``
column aside.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = "run --config configs/smoke.yaml --threads 1 --losses all --epochs 1"


def build_seconds(preset_name: str, builds: int, keep: bool) -> float:
    from losscmp import model

    preset = model.MODEL_PRESETS[preset_name]
    forget = getattr(model, "clear_model_cache", lambda: None)  # a checkout that keeps none
    forget()
    model.build_model(preset, 1, None, seed=0)  # imports smp; the model kept, where kept
    times = []
    for _ in range(builds):
        if not keep:
            forget()
        start = time.perf_counter()
        model.build_model(preset, 1, None, seed=0)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_builds(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    print(f"build_model, median of {args.builds}, {args.threads} thread(s)")
    for preset in args.presets:
        drawn = build_seconds(preset, args.builds, keep=False)
        kept = build_seconds(preset, args.builds, keep=True)
        print(f"{preset:>6}: drawn {drawn * 1e3:7.1f} ms   copied {kept * 1e3:7.1f} ms")


def epochs_rows(out: Path) -> list[dict]:
    (table,) = out.glob("*/epochs.csv")
    with table.open() as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def time_runs(args) -> None:
    checkouts = [Path(path).resolve() for path in args.runs]
    seconds: dict[Path, list[float]] = {path: [] for path in checkouts}
    cpu: dict[Path, list[float]] = {path: [] for path in checkouts}
    first_rows = None
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for index, checkout in enumerate(checkouts):
                out = Path(scratch) / f"{repeat}-{index}"
                command = [sys.executable, "-m", "losscmp", *shlex.split(args.command)]
                env = {**os.environ, "PYTHONPATH": str(checkout)}
                cpu_before = children_cpu_seconds()
                start = time.perf_counter()
                done = subprocess.run(
                    [*command, "--out", str(out)], cwd=checkout, env=env, capture_output=True
                )
                seconds[checkout].append(time.perf_counter() - start)
                cpu[checkout].append(children_cpu_seconds() - cpu_before)
                if done.returncode:
                    sys.exit(f"{checkout}: exit {done.returncode}\n{done.stderr.decode()}")
                rows = epochs_rows(out)
                first_rows = first_rows or rows
                if rows != first_rows:
                    sys.exit(f"{checkout}: epochs.csv differs from the first run's")
                print(f"{checkout}: {seconds[checkout][-1]:.1f} s, cpu {cpu[checkout][-1]:.1f} s")
    print(f"losscmp {args.command}: {len(first_rows)} epoch rows, the same in every run")
    for checkout in checkouts:
        wall, used = statistics.median(seconds[checkout]), statistics.median(cpu[checkout])
        print(f"{checkout}: median {wall:.1f} s wall, {used:.1f} s cpu (user + sys)")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"])
    parser.add_argument("--builds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", nargs=2, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--command", default=RUN, help="losscmp's arguments, without --out")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    time_runs(args) if args.runs else time_builds(args)


if __name__ == "__main__":
    main()
