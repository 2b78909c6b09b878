"""Many trials at once: whole `losscmp run` commands timed under each way of executing them.

    .venv/bin/python benchmarks/executors.py cpu          # --jobs 1 vs --jobs 2, 8 trials
    .venv/bin/python benchmarks/executors.py ray          # --executor ray vs --jobs 2
    .venv/bin/python benchmarks/executors.py ray-many     # the same, 345 one-epoch trials
    .venv/bin/python benchmarks/executors.py pets         # --jobs 1 vs --jobs 2 on JPEGs
    .venv/bin/python benchmarks/executors.py data         # workers' start and memory, big data
    .venv/bin/python benchmarks/executors.py fuse         # --fuse on vs off, every loss x 2 seeds
    python3 benchmarks/executors.py gpu                   # on a CUDA machine (see README)
    python3 benchmarks/executors.py gpu --device cpu --model tiny --image-size 32 --epochs 1 \
        --repeats 1 --losses dice,lovasz --dataset "synthetic(n_train=16,n_val=8,n_test=8)"
                                                          # the gpu sides on the CPU: checks
                                                          # the script, measures nothing

Every side is a real `losscmp run` in a subprocess, timed from start to exit
(imports, data, training, writing, the table), so the figures are what a user
waits for. Sides are alternated (A, B, A, B, ...) and each side's median is
reported with the ratio, measured in the same invocation.

cpu: 8 trials of a few seconds each (tiny preset, 64 px) with --jobs 1 (torch's
     threads, all cores) and --jobs 2 (the cores divided). Target: >= 1.4x.
ray: the same 8 trials on a local Ray with 2 CPUs vs --jobs 2. Target: <= 1.3x.
ray-many: a user's large run on a local Ray vs --jobs 2: --losses all (23 binary losses)
     x --seeds (5) x --rates (3 learning rates) = 345 trials of one epoch on the smoke
     set (about a second each); per side also the wall time per trial, Ray's overhead
     per trial over --jobs 2 (start-up included), what a slot spends between trials
     beyond their own seconds (from the trial files' times), and the main process's
     (the driver's) own CPU seconds and peak memory.
pets: cpu's comparison on real-layout data: a Pets-layout set of 500x375 JPEGs
     (--images trainval, default 160, + 40 test), 96 px, so every training sample
     goes through albumentations, the per-sample work that threads cannot split.
data: a cached Pets-layout set (3000 trainval + 700 test images, 256 px): how long
     after `prepare` the workers of `-j 2` (and Ray's tasks) start training, and
     the peak memory in use (the drop of MemAvailable, shared memory included),
     each side in a fresh process that stops at the workers' first trial.
fuse: the issue's scale on the CPU: --losses all x --seeds (2) on configs/smoke.yaml, one
     thread, --fuse on (two stacked models a seed: at most MAX_FUSED_LOSSES losses each)
     against --fuse off, in this process (-j 1), so the driver's peak memory is the
     training's; the ray-many table.
gpu: small preset, 128 px, synthetic, 8 losses x 1 seed: 1 loss alone; the 8
     sequential; fused (one stacked model); as --trials-per-gpu 2 and 4
     processes; wall time of each, the ratio to 1 loss alone (target <= 2.5x
     for the best way), the speed-up over sequential and peak GPU memory per
     trial (from the trial records). A side whose run fails, leaves a trial
     failed or runs past --side-cap seconds is reported and left out, the others
     go on, and the command exits 1; a diverged trial is named on its side's
     line; --json is rewritten after every run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

EIGHT_LOSSES = "dice,focal,tversky,bce,jaccard,lovasz,mcc,boundary"
CPU_TRIALS = [
    "--losses",
    EIGHT_LOSSES,
    "--dataset",
    "synthetic(fg_fraction=0.05,n_train=64,n_val=16)",
    "--epochs",
    "3",
    "--model",
    "tiny",
    "--image-size",
    "64",
    "--device",
    "cpu",
]
PETS_TRIALS = [
    *("--losses", EIGHT_LOSSES, "--dataset", "pets", "--epochs", "3", "--model", "tiny"),
    *("--image-size", "96", "--device", "cpu"),
]
GPU_DATASET = "synthetic(fg_fraction=0.05)"
PARALLEL_WAYS = ("fused", "--trials-per-gpu 2", "--trials-per-gpu 4")
WHOLE_RUN_TARGET = 2.5  # issue 9: 8 losses x 1 seed, the best way, against 1 loss alone


# The smoke set (configs/smoke.yaml), one epoch: a run of hundreds of trials in minutes.
MANY_TRIALS = [
    *("--losses", "all", "--dataset", "synthetic(fg_fraction=0.05,n_train=48,n_val=16,n_test=16)"),
    *("--epochs", "1", "--batch-size", "16", "--image-size", "64", "--model", "tiny"),
    *("--device", "cpu", "--threads", "1"),
]
# The smoke set as CI runs it, every loss, one thread a run: the fused model against its
# sequential trials, both in the main process (-j 1).
FUSE_TRIALS = [
    *("--config", "configs/smoke.yaml", "--losses", "all", "--device", "cpu"),
    *("--threads", "1", "--jobs", "1"),
]
# `losscmp run` in a process that writes its own CPU seconds and peak memory (not its
# children's: --jobs workers, Ray's processes) at exit to $LOSSCMP_BENCH_DRIVER.
DRIVER_PROBE = """
import atexit, json, os, resource, sys

def note():
    use = resource.getrusage(resource.RUSAGE_SELF)
    figures = {"cpu_s": use.ru_utime + use.ru_stime, "peak_mib": use.ru_maxrss / 1024}
    with open(os.environ["LOSSCMP_BENCH_DRIVER"], "w") as file:
        json.dump(figures, file)

atexit.register(note)
from losscmp.cli import run_command_then_exit_fast
run_command_then_exit_fast()
"""


class SideFailed(Exception):
    """A side's run exited non-zero or left a trial unfinished: its time is no figure."""


def run_command(
    args: list[str], out: Path, driver: Path | None = None, cap: float | None = None
) -> tuple[float, Path]:
    """Wall seconds of one whole `losscmp run`, and its run folder; ``driver``: where the
    run writes its main process's CPU seconds and peak memory (DRIVER_PROBE); ``cap``:
    seconds after which the run is stopped (SIGTERM, then SIGKILL 10 s on) and its side
    failed, so that one run hung on a GPU leaves the time for the other sides."""
    out.mkdir(parents=True, exist_ok=True)
    start_losscmp = ["-c", DRIVER_PROBE] if driver else ["-m", "losscmp"]
    command = [sys.executable, *start_losscmp, "run", *args, "--out", str(out)]
    # --foreground: the run stays in this process group, which gpu.sh's own cap stops.
    capped = ["timeout", "--foreground", "-k", "10", str(cap)] if cap else []
    env = {**os.environ, "LOSSCMP_BENCH_DRIVER": str(driver)} if driver else None
    said = out / "stderr.txt"  # a file, not a pipe: a stopped run's children may hold a pipe
    start = time.perf_counter()
    with said.open("w") as stderr:
        done = subprocess.run(
            [*capped, *command], stdout=subprocess.DEVNULL, stderr=stderr, env=env
        )
    seconds = time.perf_counter() - start
    tail = said.read_text(errors="replace")[-2000:]
    if cap and done.returncode in (124, 137):
        raise SideFailed(f"cut at its {cap:g} s cap: {' '.join(command)}\n{tail}")
    if done.returncode != 0:
        raise SideFailed(f"exit {done.returncode}: {' '.join(command)}\n{tail}")
    newest = max((path for path in out.iterdir() if path.is_dir()), key=lambda p: p.stat().st_mtime)
    check_finished(newest)
    return seconds, newest


def check_finished(run_dir: Path) -> None:
    """A run whose trials failed (after their retry) ends sooner: its wall time would read
    as a fast side. Its exit status 1 says so (``run_command``); the folder is read too, for
    a trial without a record. (A diverged trial stops early too, but that is the loss's
    doing on every side: ``execution_of`` says so instead.)"""
    meta = json.loads((run_dir / "run.json").read_text())
    failed = meta.get("failed_trials") or {}
    if failed:
        trial, reason = next(iter(failed.items()))
        raise SideFailed(f"{len(failed)} trial(s) failed in {run_dir}, e.g. {trial}: {reason}")
    if len(trial_records(run_dir)) != len(meta["trials"]):
        raise SideFailed(f"trials without a record in {run_dir}")


def trial_records(run_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in (run_dir / "trials").glob("*.json")]


def gpu_peak_per_trial(run_dir: Path) -> dict[str, float] | None:
    """Median and max MiB over the trials: the first job of a process also holds cuDNN's
    autotuning workspace, so the max is what to budget and the median what a trial uses."""
    peaks = [record.get("gpu_peak_mib") for record in trial_records(run_dir)]
    peaks = [peak for peak in peaks if peak is not None]
    return {"median": statistics.median(peaks), "max": max(peaks)} if peaks else None


def seconds_per_trial(run_dir: Path) -> float:
    """The median of the trials' own wall times: how fast one trial ran on that side."""
    return statistics.median(record["seconds"] for record in trial_records(run_dir))


def seconds_between_trials(run_dir: Path) -> float:
    """What a slot spends per trial beyond the trial's own seconds (sending it, writing
    its result, starting the next): the slots' time from the first trial file written to
    the last, per trial, less a trial's mean seconds. Slots: the run's workers, or for a
    local Ray (jobs 0) this machine's CPUs, one thread a task."""
    files = list((run_dir / "trials").glob("*.json"))
    written = sorted(path.stat().st_mtime for path in files)
    jobs = json.loads((run_dir / "run.json").read_text())["execution"]["jobs"]
    slots = jobs or os.cpu_count() or 1
    mean = statistics.mean(json.loads(path.read_text())["seconds"] for path in files)
    return slots * (written[-1] - written[0]) / max(1, len(files) - 1) - mean


def execution_of(run_dir: Path) -> str:
    """What the run says it did: device, worker processes, fused or not (run.json)."""
    meta = json.loads((run_dir / "run.json").read_text())
    execution = meta["execution"]
    fused = ", fused" if execution["fused"] else ""
    diverged = [record for record in trial_records(run_dir) if record["status"] != "finished"]
    stopped = f", {len(diverged)} trial(s) diverged" if diverged else ""
    return f"{meta['device'].split(':')[0]}, {execution['jobs']} process(es){fused}{stopped}"


def compare(
    sides: dict[str, list[str]],
    repeats: int,
    scratch: Path,
    save=None,
    driver: bool = False,
    cap: float | None = None,
) -> dict[str, dict]:
    """Alternate the sides ``repeats`` times; median wall seconds, seconds per trial and
    GPU memory per side (``driver``: and the main process's CPU seconds and peak memory).
    A side that fails (or runs past ``cap`` seconds) is reported and left out of later
    repeats; the others go on.
    ``save(results)`` is called after every run, so that a benchmark stopped by a time
    limit keeps the figures it has."""
    results: dict[str, dict] = {name: {"runs": [], "per_trial": []} for name in sides}
    for repeat in range(repeats):
        for name, args in sides.items():
            result = results[name]
            if "failed" in result:
                continue
            probe = scratch / f"{name}-{repeat}.driver.json" if driver else None
            try:
                seconds, run_dir = run_command(args, scratch / f"{name}-{repeat}", probe, cap)
            except SideFailed as failure:
                result["failed"] = str(failure)
                print(f"  {name:28s} run {repeat + 1}: FAILED {failure}", flush=True)
            else:
                result["runs"].append(seconds)
                result["per_trial"].append(seconds_per_trial(run_dir))
                result["gpu_mib"] = gpu_peak_per_trial(run_dir)
                result["execution"] = execution_of(run_dir)
                result["median_s"] = statistics.median(result["runs"])
                result["trial_s"] = statistics.median(result["per_trial"])
                result["trials"] = len(trial_records(run_dir))
                if probe:
                    result.setdefault("driver", []).append(json.loads(probe.read_text()))
                    result.setdefault("between", []).append(seconds_between_trials(run_dir))
                print(
                    f"  {name:28s} run {repeat + 1}: {seconds:7.1f} s, {run_figures(result)}",
                    flush=True,
                )
            if save:
                save(results)
    return results


def run_figures(result: dict) -> str:
    """Its trials' own seconds, GPU memory and how the side ran, on the run's line too: a
    benchmark stopped by its time limit never prints the table."""
    memory = result["gpu_mib"]
    memory = f"{memory['median']:.0f}/{memory['max']:.0f} GPU MiB/trial, " if memory else ""
    return f"{result['per_trial'][-1]:.2f} s/trial, {memory}{result['execution']}"


def print_table(results: dict[str, dict], baseline: str) -> None:
    base = results[baseline].get("median_s")
    header = f"{'side':28s} {'median s':>9s} {'x ' + baseline:>16s} {'s/trial':>8s}"
    print(f"\n{header} {'GPU MiB/trial (median/max)':>27s}  ran as")
    for name, result in results.items():
        if "median_s" not in result:
            print(f"{name:28s} {'failed':>9s}")
            continue
        ratio = f"{result['median_s'] / base:16.2f}" if base else f"{'-':>16s}"
        row = f"{name:28s} {result['median_s']:9.1f} {ratio} {result['trial_s']:8.2f}"
        memory = result["gpu_mib"]
        memory = f"{memory['median']:.0f}/{memory['max']:.0f}" if memory else "-"
        print(f"{row} {memory:>27s}  {result['execution']}")


def print_many_table(results: dict[str, dict], baseline: str) -> None:
    """ray-many's figures: per side the medians of wall time, wall time per trial, the
    overhead per trial over ``baseline`` (wall time, start-up included), what a slot
    spends between trials, and the driver's CPU seconds and peak memory."""
    base = results[baseline].get("median_s")
    print(
        f"\n{'side':16s} {'trials':>6s} {'median s':>9s} {'s/trial':>8s} "
        f"{'+s/trial vs ' + baseline:>20s} {'s between':>10s} {'driver CPU s':>13s} "
        f"{'driver MiB':>11s}"
    )
    for name, result in results.items():
        if "median_s" not in result:
            print(f"{name:16s} {'failed':>6s}")
            continue
        trials, wall = result["trials"], result["median_s"]
        over = f"{(wall - base) / trials:+20.3f}" if base else f"{'-':>20s}"
        cpu = statistics.median(run["cpu_s"] for run in result["driver"])
        peak = statistics.median(run["peak_mib"] for run in result["driver"])
        between = statistics.median(result["between"])
        print(
            f"{name:16s} {trials:6d} {wall:9.1f} {wall / trials:8.3f} {over} "
            f"{between:10.3f} {cpu:13.1f} {peak:11.0f}"
        )


def print_gpu_verdict(results: dict[str, dict]) -> None:
    """The issue's figures: each way's speed-up over sequential, and the best way's wall
    time against one loss alone (target <= 2.5x)."""
    medians = {name: result["median_s"] for name, result in results.items() if "median_s" in result}
    sequential = medians.get("sequential")
    ways = [name for name in PARALLEL_WAYS if name in medians]
    if sequential:
        for name in ways:
            print(f"speed-up of {name} over sequential: {sequential / medians[name]:.2f}x")
    alone = medians.get("1 loss alone")
    if alone and ways:
        best = min(ways, key=medians.get)
        ratio = medians[best] / alone
        verdict = "met" if ratio <= WHOLE_RUN_TARGET else "NOT met"
        print(
            f"best way: {best}, {ratio:.2f}x the wall time of 1 loss alone "
            f"(target <= {WHOLE_RUN_TARGET}x: {verdict})"
        )


def memory_in_use() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return -int(line.split()[1]) * 1024
    return 0


def worker_start(root: Path, executor: str, jobs: int = 2) -> None:
    """One side of `data`, in its own process: prints a JSON line of its figures."""
    import threading

    from losscmp.config import build_config
    from losscmp.events import TrialStarted
    from losscmp.plan import plan_run
    from losscmp.runner import execute, prepare

    before, peak, running = memory_in_use(), [memory_in_use()], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], memory_in_use())
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        config = build_config(
            losses="dice,bce", dataset="pets", data_dir=str(root), image_size=256,
            model="tiny", device="cpu", epochs=1, threads=1, jobs=jobs, executor=executor,
            out=out,
        )  # fmt: skip
        prepared = prepare(plan_run(config))
        prepared_at = time.perf_counter() - start
        started: list[float] = []

        def listener(event) -> None:
            if isinstance(event, TrialStarted):
                started.append(time.perf_counter() - start - prepared_at)
                if len(started) == jobs:
                    raise KeyboardInterrupt  # the figure is in: stop as Ctrl-C would

        with contextlib.suppress(KeyboardInterrupt):
            execute(prepared, listener=listener)
    running[0] = False
    figures = {"prepared_s": prepared_at, "workers_start_s": max(started)}
    print(json.dumps({**figures, "peak_gib": (peak[0] - before) / 2**30}))


def make_pets(scratch: Path, trainval: int, test: int, image_size: int) -> None:
    """A Pets-layout set of 500x375 JPEGs under ``scratch``, decoded once into the cache."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fixtures_data import make_pets_tree

    from losscmp.data import load_dataset

    print(f"making {trainval} + {test} pets-layout images ...", flush=True)
    root = scratch / "oxford-iiit-pet"
    make_pets_tree(root, trainval=trainval, test=test, quirks=False, shape=(375, 500))
    load_dataset("pets", data_dir=scratch, image_size=image_size)  # the cache every side reads


def data_sides(scratch: Path, images: int, repeats: int) -> None:
    make_pets(scratch, images, test=700, image_size=256)
    executors = ["local"]
    try:
        import ray  # noqa: F401

        executors.append("ray")
    except ImportError:
        print("(ray not installed: the ray side is left out)")
    print(f"\n{'side':16s} {'prepare s':>10s} {'workers train after s':>22s} {'peak GiB':>9s}")
    for _ in range(repeats):
        for executor in executors:
            command = [sys.executable, __file__, "data-side", str(scratch), executor]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(result.stderr[-2000:])
            row = json.loads(result.stdout.strip().splitlines()[-1])
            print(
                f"{executor + ' -j 2':16s} {row['prepared_s']:10.1f} "
                f"{row['workers_start_s']:22.1f} {row['peak_gib']:9.2f}",
                flush=True,
            )


def gpu_sides(options) -> tuple[dict[str, list[str]], str]:
    """Issue 9's sides: the losses one at a time, fused, and as 2 and 4 processes per GPU,
    against the first loss alone."""
    common = [
        *("--dataset", options.dataset, "--model", options.model),
        *("--image-size", str(options.image_size), "--epochs", str(options.epochs)),
        *("--device", options.device),
    ]
    losses = [*common, "--losses", options.losses]
    first = options.losses.split(",")[0]
    sides = {
        "1 loss alone": [*common, "--losses", first, "--fuse", "off"],
        "sequential": [*losses, "--fuse", "off", "--jobs", "1"],
        "fused": [*losses, "--fuse", "on", "--jobs", "1"],
        "--trials-per-gpu 2": [*losses, "--fuse", "off", "--trials-per-gpu", "2"],
        "--trials-per-gpu 4": [*losses, "--fuse", "off", "--trials-per-gpu", "4"],
    }
    return sides, "1 loss alone"


def write_json(path: Path, results: dict[str, dict]) -> None:
    path.write_text(json.dumps(results, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    if sys.argv[1:2] == ["data-side"]:  # one side of `data`, run by data_sides
        worker_start(Path(sys.argv[2]), sys.argv[3])
        return
    parser.add_argument("what", choices=["cpu", "ray", "ray-many", "pets", "data", "fuse", "gpu"])
    parser.add_argument("--seeds", type=int, help="ray-many, fuse: seeds per loss (default 5, 2)")
    parser.add_argument(
        "--rates", default="1e-3,3e-3,1e-2", help="ray-many: the learning rates (--lr-grid)"
    )
    parser.add_argument(
        "--images", type=int, help="pets, data: trainval images (default 160, 3000)"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="gpu: epochs per trial")
    parser.add_argument("--image-size", type=int, default=128, help="gpu: image side")
    parser.add_argument(
        "--device", default="cuda", help="gpu: the device ('cpu' checks the script itself)"
    )
    parser.add_argument("--losses", default=EIGHT_LOSSES, help="gpu: the losses of a run")
    parser.add_argument("--model", default="small", help="gpu: the model preset")
    parser.add_argument("--dataset", default=GPU_DATASET, help="gpu: the dataset spec")
    parser.add_argument(
        "--json", type=Path, help="also write the figures here (after every run, as they come)"
    )
    parser.add_argument(
        "--side-cap",
        type=float,
        help="seconds a side's run may take; one past it is stopped and reported as failed",
    )
    options = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="losscmp-bench-"))
    try:
        if options.what == "data":
            data_sides(scratch, options.images or 3000, options.repeats)
            return
        if options.what in ("cpu", "pets"):
            trials = CPU_TRIALS
            if options.what == "pets":
                make_pets(scratch, options.images or 160, test=40, image_size=96)
                trials = [*PETS_TRIALS, "--data-dir", str(scratch)]
            sides = {"--jobs 1": [*trials, "--jobs", "1"], "--jobs 2": [*trials, "-j", "2"]}
            baseline = "--jobs 1"
        elif options.what in ("ray", "ray-many"):
            common = [*CPU_TRIALS, "--threads", "1"]
            if options.what == "ray-many":
                rates = ["--lr-grid", options.rates] if "," in options.rates else []
                rates = rates or ["--lr", options.rates]
                common = [*MANY_TRIALS, "--seeds", str(options.seeds or 5), *rates]
            sides = {
                "--jobs 2": [*common, "-j", "2"],
                "--executor ray": [*common, "--executor", "ray"],
            }
            baseline = "--jobs 2"
        elif options.what == "fuse":
            common = [*FUSE_TRIALS, "--seeds", str(options.seeds or 2)]
            sides = {
                "--fuse off": [*common, "--fuse", "off"],
                "--fuse on": [*common, "--fuse", "on"],
            }
            baseline = "--fuse off"
        else:
            sides, baseline = gpu_sides(options)
        save = None
        if options.json:
            options.json.parent.mkdir(parents=True, exist_ok=True)
            save = partial(write_json, options.json)
        many = options.what in ("ray-many", "fuse")
        results = compare(sides, options.repeats, scratch, save, many, options.side_cap)
        (print_many_table if many else print_table)(results, baseline)
        if options.what == "gpu":
            print_gpu_verdict(results)
        if any("failed" in result for result in results.values()):
            sys.exit(1)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
