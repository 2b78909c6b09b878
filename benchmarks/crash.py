"""Kill ``losscmp run`` at random instants; does ``--resume`` finish it exactly?

    python benchmarks/crash.py                          # 20 kills over the 5 variants
    python benchmarks/crash.py --kills 40 --variants j2-main,fuse --seed 3

For each variant an uninterrupted reference run is made first. Then, per kill, the
same command starts in its own process group and is SIGKILLed at an instant drawn
by a seeded RNG from one of four phases, each timed from what the reference run
showed (its first run folder, its trial files, its exit):

- ``start-up``: before the run folder appears, or just after;
- ``training``: between the folder and the last trial;
- ``last trial``: while the last trial trains;
- ``end``: after the last trial file, while the tables, summary.csv and report.html
  are written.

If a run folder exists, ``--resume`` finishes it (itself killed in a share of the
kills, then resumed again); if none does (killed before it appeared), the command is
started again, as a user would. Every trial file, panel and derived table
(epochs.csv, images.csv, summary.csv) must then equal the reference's, timing fields
(``seconds``) aside; run.json must list no failed or damaged trial.

Variants (never Ray): ``j1`` (in this process), ``j2-main`` (``-j 2``, the main
process alone killed: its workers are left orphaned, and the resume starts while they
still live; how long they take to exit is measured), ``j2-group`` (``-j 2``, the
whole group killed), ``fuse`` (``--fuse on``, in this process), ``fuse-j2`` (``--fuse
on -j 2``: a fused group per worker, the main process alone killed). Once per variant a
second ``--resume`` is started beside the first: it must be refused with one line
(exit 2). Blocks left in /dev/shm by the killed runs are counted at the end.

Printed: per variant, kills, how many resumed to identical results, each failure with
its instant, and the seconds taken.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE = [
    "--config",
    "configs/smoke.yaml",
    "--threads",
    "1",
    "--epochs",
    "2",
    "--seeds",
    "2",
    "--losses",
    "dice,focal,tversky",
]
VARIANTS = {
    "j1": (["-j", "1"], "main"),
    "j2-main": (["-j", "2"], "main"),
    "j2-group": (["-j", "2"], "group"),
    "fuse": (["-j", "1", "--fuse", "on"], "main"),
    "fuse-j2": (["-j", "2", "--fuse", "on"], "main"),
}
PHASES = ("start-up", "training", "last trial", "end")
TIMING_FIELDS = {"seconds"}  # wall time: differs between any two runs
TABLES = ("epochs.csv", "images.csv", "summary.csv")
POLL_S = 0.005
RUN_LIMIT_S = 600  # a run that takes longer is stuck: killed and reported
ORPHAN_WAIT_S = 60  # how long orphaned workers get to exit on their own


# --------------------------------------------------------------------------- processes


def losscmp(args: list[str], log: Path) -> subprocess.Popen:
    """``losscmp run ARGS`` from this checkout, in its own process group."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "ab") as stream:
        process = subprocess.Popen(
            [sys.executable, "-m", "losscmp", "run", *args],
            cwd=REPO,
            env=env,
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    STARTED.append(process.pid)
    return process


STARTED: list[int] = []  # the pids of every losscmp this script started
SHM = Path("/dev/shm")


def shm_blocks() -> set[str]:
    try:
        return {entry.name for entry in os.scandir(SHM)}
    except OSError:
        return set()


def left_in_shm(before: set[str]) -> tuple[int, int]:
    """Shared-memory blocks that appeared since ``before`` and are still there: all of them
    (other programs' included), and those named after a process of this script (losscmp
    names its blocks after their owner on Linux)."""
    left = shm_blocks() - before
    ours = [name for name in left if name.startswith("losscmp_") and
            int(name.split("_")[2]) in STARTED]  # fmt: skip
    return len(left), len(ours)


def group_alive(pgid: int) -> list[int]:
    """The pids of the live (not zombie) processes of process group ``pgid``."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry.name))
    return alive


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def end_group(pgid: int) -> None:
    """SIGKILL what is left of a group this script started (only after a check failed)."""
    for pid in group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def finish(process: subprocess.Popen) -> int:
    try:
        return process.wait(RUN_LIMIT_S)
    except subprocess.TimeoutExpired:
        end_group(process.pid)
        process.wait()
        return -9


# --------------------------------------------------------------------------- the folder


def run_folders(out: Path) -> list[Path]:
    if not out.is_dir():
        return []
    return sorted(path for path in out.iterdir() if path.is_dir() and not path.name.startswith("."))


def trial_count(out: Path) -> int:
    folders = run_folders(out)
    return len(list((folders[0] / "trials").glob("*.json"))) if folders else 0


@dataclass
class Timeline:
    """When the reference run reached each point, in seconds from its start."""

    folder: float = 0.0
    trials: list[float] = field(default_factory=list)  # the k-th trial file appeared
    exit: float = 0.0


def watch(process: subprocess.Popen, out: Path, expected: int) -> Timeline:
    started, timeline = time.monotonic(), Timeline()
    while process.poll() is None:
        now = time.monotonic() - started
        if not timeline.folder and run_folders(out):
            timeline.folder = now
        while len(timeline.trials) < trial_count(out):
            timeline.trials.append(now)
        time.sleep(POLL_S)
    timeline.exit = time.monotonic() - started
    timeline.trials += [timeline.exit] * (expected - len(timeline.trials))
    return timeline


@dataclass
class Instant:
    """When to kill: ``delay`` seconds after the moment named by ``after``."""

    phase: str
    after: str  # "start", "folder" or "trial k"
    delay: float

    def __str__(self) -> str:
        return f"{self.phase}: {self.after} + {self.delay:.2f} s"


def draw_instant(rng: random.Random, timeline: Timeline, phases=PHASES) -> Instant:
    phase = rng.choice(phases)
    last = len(timeline.trials)
    if phase == "start-up":
        return Instant(phase, "start", rng.uniform(0, timeline.folder + 1.0))
    if phase == "training":
        k = rng.randrange(0, last - 1)
        if k == 0:
            span = timeline.trials[0] - timeline.folder
            return Instant(phase, "folder", rng.uniform(0, span))
        span = timeline.trials[k] - timeline.trials[k - 1]
        return Instant(phase, f"trial {k}", rng.uniform(0, span))
    if phase == "last trial":
        span = timeline.trials[-1] - timeline.trials[-2]
        return Instant(phase, f"trial {last - 1}", rng.uniform(0, span))
    # Most of the time after the last trial file goes to the report; a kill drawn past
    # the run's own end would miss it (the run ends a little sooner or later each time).
    span = 0.9 * (timeline.exit - timeline.trials[-1])
    return Instant(phase, f"trial {last}", rng.uniform(0, span))


def reached(instant: Instant, out: Path) -> bool:
    if instant.after == "start":
        return True
    if instant.after == "folder":
        return bool(run_folders(out))
    return trial_count(out) >= int(instant.after.split()[1])


def kill_at(process: subprocess.Popen, out: Path, instant: Instant, target: str) -> bool:
    """SIGKILL the main process (``main``) or its group at ``instant``; False if it had
    ended first."""
    while not reached(instant, out):
        if process.poll() is not None:
            return False
        time.sleep(POLL_S)
    deadline = time.monotonic() + instant.delay
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
    if process.poll() is not None:
        return False
    if target == "group":
        os.killpg(process.pid, signal.SIGKILL)
    else:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return True


# --------------------------------------------------------------------------- comparing


def without_timing(value):
    if isinstance(value, dict):
        return {key: without_timing(v) for key, v in value.items() if key not in TIMING_FIELDS}
    if isinstance(value, list):
        return [without_timing(item) for item in value]
    return value


def table_text(path: Path) -> str:
    import pandas as pd

    frame = pd.read_csv(path, index_col=False)
    frame = frame.drop(columns=[column for column in frame.columns if column in TIMING_FIELDS])
    return frame.sort_values(list(frame.columns[:5]), kind="stable").to_csv(index=False)


def differences(reference: Path, run: Path) -> list[str]:
    """What in ``run`` differs from the ``reference`` folder (timing fields aside)."""
    import numpy as np

    problems = []
    want = {path.name for path in (reference / "trials").glob("*.json")}
    have = {path.name for path in (run / "trials").glob("*.json")}
    if want != have:
        problems.append(f"trials/ lacks {sorted(want - have)}, has extra {sorted(have - want)}")
    for name in sorted(want & have):
        stored = (json.loads((folder / "trials" / name).read_text()) for folder in (reference, run))
        if without_timing(next(stored)) != without_timing(next(stored)):
            problems.append(f"trials/{name} differs")
    for table in TABLES:
        if not (run / table).is_file():
            problems.append(f"{table} missing")
        elif table_text(reference / table) != table_text(run / table):
            problems.append(f"{table} differs")
    for panel in sorted((reference / "panel").glob("*.npz")):
        other = run / "panel" / panel.name
        if not other.is_file():
            problems.append(f"panel/{panel.name} missing")
            continue
        with np.load(panel) as a, np.load(other) as b:
            if sorted(a.files) != sorted(b.files) or any(
                not np.array_equal(a[key], b[key]) for key in a.files
            ):
                problems.append(f"panel/{panel.name} differs")
    meta = json.loads((run / "run.json").read_text())
    for key in ("failed_trials", "damaged_trials"):
        if meta.get(key):
            problems.append(f"run.json lists {key}: {meta[key]}")
    if not meta.get("finished_at"):
        problems.append("run.json has no finished_at")
    if not (run / "report.html").is_file():
        problems.append("report.html missing")
    if (run / "trials" / "damaged").exists():
        problems.append("trials/damaged/ exists")
    leftovers = [str(path.relative_to(run)) for path in run.rglob("*.tmp")]
    if leftovers:
        problems.append(f"temporary files left: {leftovers}")
    return problems


# --------------------------------------------------------------------------- one variant


@dataclass
class Outcome:
    instant: Instant
    killed: bool
    resumes: int = 0
    restarted: bool = False
    problems: list[str] = field(default_factory=list)
    orphans_s: float | None = None  # main killed alone: until its workers had all exited
    orphans_cpu_s: float = 0.0
    second_writer: str | None = None  # a second --resume beside the first: "refused"
    orphans_n: int = 0  # processes of its group alive when the main process was killed


def reference_run(variant: str, work: Path) -> tuple[Path, Timeline, float]:
    flags, _ = VARIANTS[variant]
    out = work / f"{variant}-reference"
    started = time.monotonic()
    process = losscmp([*BASE, *flags, "--out", str(out)], work / f"{variant}-reference.log")
    timeline = watch(process, out, expected=6)
    if process.returncode != 0:
        raise SystemExit(f"the reference run of {variant} failed: see {work}")
    return run_folders(out)[0], timeline, time.monotonic() - started


def watch_orphans(pgid: int, outcome: Outcome) -> None:
    """How long the killed main process's workers live on, and the CPU they use."""
    outcome.orphans_n = len(group_alive(pgid))
    outcome.orphans_s, outcome.orphans_cpu_s = orphans(pgid)


def orphans(pgid: int) -> tuple[float, float]:
    """Seconds until the killed main process's workers have all exited (measured up to
    ORPHAN_WAIT_S, then they are ended), and the CPU seconds they used meanwhile."""
    started = time.monotonic()
    cpu_before = {pid: cpu_seconds(pid) for pid in group_alive(pgid)}
    cpu_last = dict(cpu_before)
    while time.monotonic() - started < ORPHAN_WAIT_S:
        alive = group_alive(pgid)
        for pid in alive:
            cpu_last[pid] = cpu_seconds(pid) or cpu_last.get(pid, 0.0)
        if not alive:
            break
        time.sleep(0.05)
    else:
        end_group(pgid)
    used = sum(cpu_last[pid] - cpu_before.get(pid, 0.0) for pid in cpu_last)
    return time.monotonic() - started, used


def one_kill(
    variant: str,
    index: int,
    rng: random.Random,
    timeline: Timeline,
    work: Path,
    check_lock: bool,
    phases: tuple[str, ...] = PHASES,
) -> Outcome:
    flags, target = VARIANTS[variant]
    out = work / f"{variant}-{index}"
    log = work / f"{variant}-{index}.log"
    outcome = Outcome(draw_instant(rng, timeline, phases), killed=False)
    process = losscmp([*BASE, *flags, "--out", str(out)], log)
    outcome.killed = kill_at(process, out, outcome.instant, target)
    if target == "main" and flags[1] == "2" and outcome.killed:
        watcher = threading.Thread(target=watch_orphans, args=(process.pid, outcome))
        watcher.start()  # measured while the resume starts beside them
    else:
        watcher = None
    # The resume starts at once, while any orphaned workers still live.
    resume_kill = rng.random() < 0.35
    resume_delay = rng.uniform(0, timeline.exit * 0.8)
    if not run_folders(out):  # killed before the folder appeared: nothing to resume
        outcome.restarted = True
        rerun = losscmp([*BASE, *flags, "--out", str(out)], log)
        if finish(rerun) != 0:
            outcome.problems.append(f"the restarted run failed (exit {rerun.returncode})")
    else:
        run_dir = run_folders(out)[0]
        resume_args = [*BASE, *flags, "--resume", str(run_dir)]
        first = losscmp(resume_args, log)
        outcome.resumes += 1
        if check_lock:
            outcome.second_writer = second_writer(resume_args, first, work, run_dir)
            if outcome.second_writer not in ("refused", None):
                outcome.problems.append(outcome.second_writer)
        if resume_kill and kill_at(first, out, Instant("resume", "start", resume_delay), "group"):
            first = losscmp(resume_args, log)
            outcome.resumes += 1
        if finish(first) != 0:
            outcome.problems.append(f"the last --resume failed (exit {first.returncode})")
    if watcher is not None:
        watcher.join()
    folders = run_folders(out)
    if len(folders) != 1:
        outcome.problems.append(f"{len(folders)} run folders in {out}")
    if not outcome.problems:
        outcome.problems += differences(reference_dir[variant], folders[0])
    if not outcome.problems:
        shutil.rmtree(out, ignore_errors=True)
        log.unlink(missing_ok=True)
    return outcome


def second_writer(args: list[str], first: subprocess.Popen, work: Path, run_dir: Path):
    """A second --resume of a folder the first is writing: "refused" (one line, exit 2),
    else what it did; None when the first ended before the contest."""
    while first.poll() is None and lock_holder(run_dir) != first.pid:
        time.sleep(POLL_S)
    if first.poll() is not None:
        return None  # it had nothing left to do: nothing to compete with
    log = work / "second-writer.log"
    log.unlink(missing_ok=True)
    second = losscmp(args, log)
    code = finish(second)
    text = log.read_text().strip()
    if code == 2 and "being written by another losscmp process" in text:
        return "refused"
    if first.poll() is not None:
        return None  # the first finished before the second asked: not a contest
    return f"a second --resume beside the first: exit {code}, said {text[-300:]!r}"


def lock_holder(run_dir: Path) -> int | None:
    try:
        return int((run_dir / ".losscmp.lock").read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


reference_dir: dict[str, Path] = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20, help="in all, spread over the variants")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phases", default=",".join(PHASES), help="kill only in these")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    options = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows in a log as it comes
    variants = options.variants.split(",")
    phases = tuple(options.phases.split(","))
    unknown = [name for name in [*variants, *phases] if name not in [*VARIANTS, *PHASES]]
    if unknown:
        parser.error(f"unknown variant or phase: {', '.join(unknown)}")
    rng = random.Random(options.seed)
    work = Path(tempfile.mkdtemp(prefix="losscmp-crash-"))
    print(f"work folder: {work}", flush=True)
    started, shm_before = time.monotonic(), shm_blocks()
    timelines = {}
    for variant in variants:
        same = [v for v in reference_dir if VARIANTS[v][0] == VARIANTS[variant][0]]
        if same:  # the same command (j2-main, j2-group): one reference serves both
            reference_dir[variant], timelines[variant] = reference_dir[same[0]], timelines[same[0]]
            print(f"{variant}: the reference of {same[0]}")
            continue
        reference_dir[variant], timelines[variant], seconds = reference_run(variant, work)
        line = ", ".join(f"{t:.1f}" for t in timelines[variant].trials)
        print(
            f"{variant}: reference {seconds:.1f} s (folder at {timelines[variant].folder:.1f} s; "
            f"trial files at {line}; exit {timelines[variant].exit:.1f} s)",
            flush=True,
        )
    results: dict[str, list[Outcome]] = {variant: [] for variant in variants}
    for index in range(options.kills):
        variant = variants[index % len(variants)]
        check_lock = not any(o.second_writer == "refused" for o in results[variant])
        outcome = one_kill(variant, index, rng, timelines[variant], work, check_lock, phases)
        results[variant].append(outcome)
        state = "identical" if not outcome.problems else "FAILED: " + "; ".join(outcome.problems)
        orphan = (
            f", {outcome.orphans_n} orphan(s) gone after {outcome.orphans_s:.1f} s "
            f"({outcome.orphans_cpu_s:.1f} s CPU)"
            if outcome.orphans_s is not None
            else ""
        )
        how = "killed" if outcome.killed else "ended before the kill"
        again = "restarted" if outcome.restarted else f"{outcome.resumes} resume(s)"
        if outcome.second_writer == "refused":
            again += " (a second --resume beside the first: refused)"
        print(f"{variant} #{index}: {how} at {outcome.instant}; {again}{orphan}: {state}")
    print(
        f"\n{'variant':10} {'kills':>5} {'identical':>9} {'restarted':>9} {'2 resumes':>9} "
        f"{'2nd writer':>10}  orphans (main killed alone)"
    )
    for variant, outcomes in results.items():
        kills = sum(o.killed for o in outcomes)
        same = sum(not o.problems for o in outcomes if o.killed)
        refused = "refused" if any(o.second_writer == "refused" for o in outcomes) else "-"
        watched = [o for o in outcomes if o.orphans_s is not None and o.orphans_n]
        orphan = (
            f"{len(watched)} kill(s) left some; all gone within "
            f"{max(o.orphans_s for o in watched):.1f} s, "
            f"{max(o.orphans_cpu_s for o in watched):.1f} s CPU at most"
            if watched
            else "-"
        )
        print(
            f"{variant:10} {kills:5d} {same:9d} {sum(o.restarted for o in outcomes):9d} "
            f"{sum(o.resumes > 1 for o in outcomes):9d} {refused:>10}  {orphan}"
        )
    anyone, ours = left_in_shm(shm_before)
    print(f"left in /dev/shm: {anyone} new block(s), {ours} named after this script's runs")
    print(f"{time.monotonic() - started:.0f} s in all")
    failed = any(o.problems for outcomes in results.values() for o in outcomes)
    if not (options.keep or failed):
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
