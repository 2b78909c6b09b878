"""What a run of many trials costs its main process besides training.

    python benchmarks/bookkeeping.py                      # 390 trials, 8 epochs, 64 test images
    python benchmarks/bookkeeping.py --trials 156 --images 8

No model is trained: trial records shaped like the synthetic set's (``--epochs`` epoch
rows, two rows per test image) go through ``RunStore.write_trial`` as a run writes them,
timed on the trials' own clock: a trial takes ``--trial-s`` seconds of simulated
training before its record arrives. Then the report is built from the folder, and the
progress display is fed the events such a run sends (each step, each evaluation batch,
each epoch). Printed: the seconds of each part, and for the writing how many rebuilds of
the tables it made. Run it on two checkouts to compare them.
"""

from __future__ import annotations

import argparse
import copy
import io
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def trial_record(index: int, epochs: int, images: int) -> dict:
    """The record of trial ``index``: a loss of 26, a rate of 3, a seed, as a run names them."""
    from losscmp.results import trial_id

    loss, rate, seed = f"loss{index % 26:02d}", (1e-3, 3e-3, 1e-2)[index // 26 % 3], index // 78
    dataset = "synthetic(fg_fraction=0.05)"
    scores = {f"{split}_{name}": 0.5 + index / 1e4 for split in ("val", "test")
              for name in ("dice", "iou", "mcc", "precision", "recall", "image_dice",
                           "image_iou", "dice_t", "iou_t", "mcc_t", "ap", "ece")}  # fmt: skip
    epoch_rows = [
        {
            "epoch": epoch,
            "train_loss": 0.3,
            **scores,
            "threshold": 0.5,
            "lr": rate,
            "seconds": 1.5,
            "status": "ok",
        }  # fmt: skip
        for epoch in range(1, epochs + 1)
    ]
    image_rows = [
        {
            "which": which,
            "split": "test",
            "image": image,
            "dice": 0.7,
            "iou": 0.55,
            **({"hd95": 3.2, "nsd": 0.8} if which == "final" else {}),
        }  # fmt: skip
        for which in ("best", "final")
        for image in range(images)
    ]
    return {
        "trial_id": trial_id(dataset, loss, seed, rate),
        "loss": loss, "loss_params": {}, "base_lr": rate, "seed": seed, "dataset": dataset,
        "status": "finished", "diverged_epoch": None, "best_epoch": epochs,
        "seconds": 1.5 * epochs, "epochs": epoch_rows, "images": image_rows,
    }  # fmt: skip


def write_trials(run_dir: Path, records: list[dict], trial_s: float) -> tuple[float, int]:
    """Seconds the store took to write every record, as a run writes them; rebuilds made."""
    from losscmp.results import RunStore

    store = RunStore(run_dir)
    # The run's clock: the training simulated so far, plus this process's real time.
    training, start = [0.0], time.perf_counter()
    store.clock = lambda: training[0] + time.perf_counter() - start
    spent, rebuilds = [0.0], [0]
    rebuild = store.rebuild_tables

    def counted(records=None) -> None:
        rebuilds[0] += 1
        rebuild(records)

    store.rebuild_tables = counted
    # a checkout from before defer_tables rebuilt them after every trial
    defer = {"defer_tables": True} if hasattr(store, "flush_tables") else {}
    with store.lock():
        store.finished_trials()
        store.rebuild_tables()
        for record in records:
            training[0] += trial_s
            started = time.perf_counter()
            store.write_trial(copy.deepcopy(record), **defer)
            spent[0] += time.perf_counter() - started
        started = time.perf_counter()
        if defer:
            store.flush_tables()
        spent[0] += time.perf_counter() - started
    return spent[0], rebuilds[0]


def feed_events(trials: int, epochs: int, steps: int, batches: int) -> float:
    """Seconds the progress display (time left included) takes for a run's events."""
    from losscmp import console
    from losscmp.events import (
        EpochDone,
        Evaluating,
        RunStarted,
        StepDone,
        TrialEnded,
        TrialInfo,
        TrialStarted,
    )

    infos = tuple(TrialInfo(f"t{i}", "d", f"loss{i % 26}", i // 26) for i in range(trials))
    record = {"status": "ok", "train_loss": 0.3, "val_dice": 0.5, "val_mcc": 0.4}
    console.err = console.Console(file=io.StringIO(), width=120)  # a log: no live display
    progress = console.TrainingProgress()
    started = time.perf_counter()
    progress(RunStarted(Path("run"), infos, 0, epochs, "2 worker processes"))
    for pair in range(0, trials, 2):  # two at a time, as -j 2
        group = infos[pair : pair + 2]
        for info in group:
            progress(TrialStarted(info.trial_id, f"worker {pair % 2}"))
        for epoch in range(1, epochs + 1):
            for step in range(1, steps + 1):
                for info in group:
                    progress(StepDone(info.trial_id, epoch, step, steps))
            for split in ("val", "test"):
                for batch in range(1, batches + 1):
                    for info in group:
                        progress(Evaluating(info.trial_id, split, batch, batches))
            for info in group:
                progress(EpochDone(info.trial_id, {**record, "epoch": epoch}))
        for info in group:
            progress(TrialEnded(info.trial_id, "finished"))
    return time.perf_counter() - started


def report_seconds(run_dir: Path) -> float:
    from losscmp.summary import build_report

    started = time.perf_counter()
    build_report([run_dir])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=390)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--images", type=int, default=64, help="test images per trial")
    parser.add_argument("--trial-s", type=float, default=1.0, help="simulated training")
    parser.add_argument("--steps", type=int, default=16, help="training steps per epoch")
    parser.add_argument("--batches", type=int, default=4, help="evaluation batches per split")
    args = parser.parse_args()
    records = [trial_record(index, args.epochs, args.images) for index in range(args.trials)]
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder)
        (run_dir / "run.json").write_text('{"schema_version": 2, "run_id": "bench"}')
        seconds, rebuilds = write_trials(run_dir, records, args.trial_s)
        print(
            f"writing {args.trials} trials ({args.epochs} epochs, {args.images} test images, "
            f"{args.trial_s:g} s of training each): {seconds:.1f} s, {rebuilds} rebuilds"
        )
        print(f"report's summary of them: {report_seconds(run_dir):.1f} s")
    seconds = feed_events(args.trials, args.epochs, args.steps, args.batches)
    print(f"progress display, {args.steps} steps and 2 x {args.batches} batches an epoch: "
          f"{seconds:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
