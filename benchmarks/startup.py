"""How fast the commands a user types to look around, and their common mistakes, answer.

    .venv/bin/python benchmarks/startup.py                       # this checkout
    .venv/bin/python benchmarks/startup.py /path/to/before . --repeats 7

Each command (``COMMANDS``) runs as ``python -m losscmp ...`` from every checkout given
(``PYTHONPATH`` set to it), in turn, ``--repeats`` times, from one scratch folder; prints
each checkout's median wall-clock and CPU seconds (CPU time is less shaken by other
work on a busy machine), which heavy modules the command imported
(one more run under ``-X importtime``), and whether its output (stdout, stderr, exit
status) is byte for byte the first checkout's.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What a user types first: listings, and mistakes refused before anything runs.
COMMANDS = [
    "losses",
    "losses dice",
    "losses --show tversky",
    "losses dcie",
    "losses tversky(alpha=0.7)",
    "datasets",
    "run --losses dcie",
    "run --losses focal(gama=1)",
    "run --losses tversky(alpha=x)",
    "run --dataset petz",
    "run --epochs 0",
    "report /nonexistent",
    "report notarun",
    "report notarun --metric dise",
    "report notarun --csv notarun",
    "report notarun --csv a --html a",
]
HEAVY = ("torch", "pandas", "numpy", "scipy", "segmentation_models_pytorch", "matplotlib")


def invoke(checkout: Path, command: str, scratch: Path, *flags: str):
    """(wall seconds, CPU seconds, the finished process) of one command."""
    environment = {**os.environ, "PYTHONPATH": str(checkout), "COLUMNS": "200"}
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(
        [sys.executable, *flags, "-m", "losscmp", *command.split(" ")],
        cwd=scratch,
        env=environment,
        capture_output=True,
    )
    return time.perf_counter() - start, _children_cpu() - cpu, done


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def heavy_imports(checkout: Path, command: str, scratch: Path) -> list[str]:
    *_, done = invoke(checkout, command, scratch, "-X", "importtime")
    lines = done.stderr.decode(errors="replace").splitlines()
    imported = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import ")}
    return [name for name in HEAVY if name in imported]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="*", type=Path, default=[Path(".")])
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    checkouts = [path.resolve() for path in options.checkouts]
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        (scratch / "notarun").mkdir()  # a folder that holds no run
        header = "".join(f"{path.name[:14]:>16}" for path in checkouts)
        print(f"{'command':<32}{header}  heavy imports, each checkout")
        print(f"{'':<32}" + f"{'wall / CPU s':>16}" * len(checkouts))
        for command in COMMANDS:
            wall: dict[Path, list[float]] = {path: [] for path in checkouts}
            cpu: dict[Path, list[float]] = {path: [] for path in checkouts}
            outputs = {}
            for _ in range(options.repeats):
                for path in checkouts:
                    elapsed, used, done = invoke(path, command, scratch)
                    wall[path].append(elapsed)
                    cpu[path].append(used)
                    outputs[path] = (done.stdout, done.stderr, done.returncode)
            same = all(output == outputs[checkouts[0]] for output in outputs.values())
            cells = "".join(
                f"{statistics.median(wall[path]):>8.2f} / {statistics.median(cpu[path]):<5.2f}"
                for path in checkouts
            )
            heavy = " | ".join(
                ",".join(heavy_imports(path, command, scratch)) or "-" for path in checkouts
            )
            print(f"{command:<32}{cells}  {heavy}{'' if same else '  OUTPUT DIFFERS'}")


if __name__ == "__main__":
    main()
