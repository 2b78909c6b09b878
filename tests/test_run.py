"""End to end: `losscmp run` and `losscmp report` on the smoke config, as CI runs them."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from processes import worker_pids

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"

METRIC_COLUMNS = ["train_loss", "val_dice", "val_iou", "val_mcc", "val_precision", "val_recall"]


def test_smoke_run_prints_the_table_and_writes_the_run_folder(smoke_run):
    result, run_dir = smoke_run
    for loss in ("dice", "focal", "tversky"):
        assert loss in result.stdout
    assert "Dice" in result.stdout
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["schema_version"] == 2
    assert meta["learning_rates"] == [meta["config"]["lr"]]
    assert meta["config"]["losses"] == ["dice", "focal", "tversky"]
    assert meta["finished_at"] is not None
    assert set(meta["versions"]) >= {"torch", "segmentation-models-pytorch", "python"}
    assert meta["device"].startswith("cpu")
    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert len(epochs) == 3 * 2  # losses x epochs
    assert {"loss", "seed", "epoch", "seconds", *METRIC_COLUMNS} <= set(epochs.columns)
    assert epochs[METRIC_COLUMNS].notna().all().all()
    assert epochs["val_dice"].between(0, 1).all()
    # every epoch scored on the held-out test split too, and (binary) at a chosen threshold
    test_columns = [column.replace("val_", "test_") for column in METRIC_COLUMNS]
    assert (
        epochs[test_columns + ["threshold", "test_dice_t", "test_ap", "test_ece"]]
        .notna()
        .all()
        .all()
    )
    summary = pd.read_csv(run_dir / "summary.csv")
    assert sorted(summary["loss"]) == ["dice", "focal", "tversky"]
    assert set(summary["headline_split"]) == {"test"} and summary["lr_chosen"].all()
    assert "on the test split" in " ".join(result.stdout.split())
    images = pd.read_csv(run_dir / "images.csv")
    assert set(images["which"]) == {"best", "final"}


def test_a_logged_run_has_a_line_per_trial_and_nothing_of_the_bars(smoke_run):
    """stderr to a file (CliRunner's is not a terminal): Rich's last frame of the bars
    came after the per-trial lines, the overall bar and its times cut to the log's width."""
    import re

    result, run_dir = smoke_run
    lines = result.stderr.splitlines()
    assert lines[0] == f"run folder: {run_dir}" and lines[1].startswith("executing: in this")
    trials = [re.sub(r", ~?\d:\d\d:\d\d left\)$", ")", line) for line in lines[2:5]]
    assert trials == [
        "finished: dice · seed 0 (1/3 trials)",
        "finished: focal · seed 0 (2/3 trials)",
        "finished: tversky · seed 0 (3/3 trials)",
    ]
    assert lines[5:] == [f"wrote {run_dir / 'summary.csv'}", f"wrote {run_dir / 'report.html'}"]


def test_per_image_scores_and_the_panel_are_of_the_test_images(smoke_run):
    """images.csv, HD95 and the prediction panel are read on the test split, which chose
    nothing: recomputed here from the panel's predictions and the test masks."""
    from losscmp import metrics
    from losscmp.data import load_dataset
    from losscmp.render import figures
    from losscmp.results import RunStore, slug
    from losscmp.summary import load_run

    result, run_dir = smoke_run
    meta = json.loads((run_dir / "run.json").read_text())
    (label,) = meta["datasets"]
    data = load_dataset(label, image_size=64, seed=meta["config"]["seed"])
    images = pd.read_csv(run_dir / "images.csv")
    assert set(images["split"]) == {"test"}
    assert len(images) == 3 * 2 * data.size("test")  # losses x (best, final) x images
    store = RunStore(run_dir)
    reference = store.read_panel(f"test__{slug(label)}")
    assert np.array_equal(reference["masks"], data.masks("test")[:4])
    for trial_file in sorted((run_dir / "trials").glob("*.json")):
        trial_id = trial_file.stem
        panel = store.read_panel(trial_id)
        assert str(panel["split"]) == "test"
        final = images[(images["loss"] == trial_id.split("__")[1]) & (images["which"] == "final")]
        for index, prediction in enumerate(panel["pred"]):
            row = final[final["image"] == index].iloc[0]
            truth = data.masks("test")[index] == 1
            predicted = prediction == 1
            if truth.any() or predicted.any():
                assert row["hd95"] == pytest.approx(metrics.hd95(predicted, truth))
                overlap = 2 * (truth & predicted).sum() / (truth.sum() + predicted.sum())
                assert row["dice"] == pytest.approx(overlap, abs=1e-6)
    summary = pd.read_csv(run_dir / "summary.csv")
    assert set(summary["images_split"]) == {"test"}
    assert "HD95: pixels, at the last epoch, mean over the test images." in " ".join(
        result.stdout.split()
    )
    assert figures.prediction_panel(load_run(run_dir), label).split == "test"


def test_smoke_run_is_fast(smoke_run):
    _, run_dir = smoke_run
    trials = [json.loads(path.read_text()) for path in (run_dir / "trials").glob("*.json")]
    assert sum(trial["seconds"] for trial in trials) < 30


@pytest.mark.slow
def test_same_command_twice_gives_identical_numbers(cli, smoke_run, tmp_path):
    _, first_dir = smoke_run
    result = cli("run", "--config", SMOKE, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    (second_dir,) = tmp_path.iterdir()
    first = pd.read_csv(first_dir / "epochs.csv")
    second = pd.read_csv(second_dir / "epochs.csv")
    pd.testing.assert_frame_equal(first[METRIC_COLUMNS], second[METRIC_COLUMNS])


def test_a_run_in_this_process_keeps_none_of_its_data_once_it_ends(cli, tmp_path):
    """Jobs trained in the CLI's own process (--jobs 1) take the run's datasets from the
    worker module, where they stayed after the command: a program running losscmp run
    after run (a sweep of seeds, of datasets) held every earlier run's data in memory."""
    from losscmp import worker

    before = dict(worker._DATASETS)
    dataset = "synthetic(fg_fraction=0.1,n_train=16,n_val=8,n_test=8)"
    args = ["--config", SMOKE, "--losses", "dice", "--dataset", dataset, "--epochs", "1"]
    result = cli("run", *args, "--threads", "1", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert dict(worker._DATASETS) == before


def test_report_reprints_the_table_from_files_alone(cli, smoke_run):
    result, run_dir = smoke_run
    (run_dir / "summary.csv").unlink()
    report = cli("report", run_dir.parent, "--metric", "mcc")
    assert report.exit_code == 0, report.output
    assert (run_dir / "summary.csv").exists()
    for loss in ("dice", "focal", "tversky"):
        assert loss in report.stdout
    assert "MCC" in report.stdout


def test_report_rejects_an_unknown_metric(cli, smoke_run):
    _, run_dir = smoke_run
    result = cli("report", run_dir, "--metric", "dise")
    assert result.exit_code == 2
    assert "did you mean 'dice'" in result.stderr


def test_every_loss_starts_from_the_same_weights():
    from losscmp.model import MODEL_PRESETS, build_model

    first = build_model(MODEL_PRESETS["tiny"], 1, None, seed=3).state_dict()
    again = build_model(MODEL_PRESETS["tiny"], 1, None, seed=3).state_dict()
    other = build_model(MODEL_PRESETS["tiny"], 1, None, seed=4).state_dict()
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)


def _run_in_subprocess(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "losscmp", "run", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_resume_after_a_killed_process_keeps_finished_trials(cli, tmp_path):
    out = tmp_path / "runs"
    args = ["--config", str(SMOKE), "--out", str(out), "--losses", "dice,bce,focal"]
    process = _run_in_subprocess(*args, cwd=tmp_path)
    deadline = time.monotonic() + 120
    trials_dir = None
    while time.monotonic() < deadline:
        found = list(out.glob("*/trials/*.json")) if out.exists() else []
        if found:
            trials_dir = found[0].parent
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert trials_dir is not None, "no trial finished before the deadline"
    finished = {path.name: path.read_text() for path in trials_dir.glob("*.json")}
    assert 1 <= len(finished) < 3
    run_dir = trials_dir.parent
    assert json.loads((run_dir / "run.json").read_text())["finished_at"] is None

    partial = cli("report", run_dir)
    assert partial.exit_code == 0
    assert f"{3 - len(finished)} planned trial(s) have no result yet" in partial.stderr
    assert f"--resume {run_dir}" in partial.stderr

    changed = cli("run", *args, "--epochs", "5", "--resume", run_dir)
    assert changed.exit_code == 2 and "changes epochs" in changed.stderr

    result = cli("run", *args, "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert len(list(trials_dir.glob("*.json"))) == 3
    for name, content in finished.items():
        assert (trials_dir / name).read_text() == content  # not retrained
    assert json.loads((run_dir / "run.json").read_text())["finished_at"] is not None
    assert len(pd.read_csv(run_dir / "epochs.csv")) == 3 * 2


def test_amp_asked_for_on_the_cpu_is_noted_as_set_aside(cli, tmp_path):
    """--amp on the CPU was taken without a word, and run.json's 'amp: true' read as if
    the trials had trained in bf16: they train in float32 (autocast is on CUDA only)."""
    args = ["--config", SMOKE, "--epochs", "1", "--device", "cpu", "--out", tmp_path, "--dry-run"]
    note = "note: --amp counts on CUDA only: set aside on the cpu (float32)"
    assert note in cli("run", *args, "--amp").stderr.splitlines()
    for quiet in ([], ["--no-amp"]):  # the default, or nothing to set aside
        assert "note:" not in cli("run", *args, *quiet).stderr
    config = tmp_path / "amp.yaml"
    config.write_text(SMOKE.read_text() + "amp: true\n", encoding="utf-8")
    from_file = cli("run", *args[2:], "--config", config).stderr.splitlines()
    assert (
        f"note: config file {config}: 'amp' counts on CUDA only: set aside on the cpu (float32)"
        in from_file
    )


@pytest.mark.parametrize(("capability", "noted"), [((7, 0), True), ((7, 5), True), ((8, 0), False)])
def test_amp_on_a_gpu_without_bf16_is_noted_as_set_aside(monkeypatch, capability, noted):
    """A V100 (7.0) or T4 (7.5) trains in float32 whatever --amp says (train.py's autocast:
    bf16 there is emulated), and --amp went by without the note the CPU gives. The GPU
    faked as tests/test_executors.py fakes its capability."""
    from types import SimpleNamespace

    from losscmp import devices
    from losscmp.config import build_config
    from losscmp.executors.base import Execution
    from losscmp.runner import execution_notes

    prepared = SimpleNamespace(
        plan=SimpleNamespace(config=build_config(amp=True)),
        settings=SimpleNamespace(device=torch.device("cuda")),
        execution=Execution(),
        executor=SimpleNamespace(crowding=lambda execution: ""),
        datasets={},
    )
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(devices, "cuda_device_count", lambda: 1)
    devices.native_bf16.cache_clear()
    try:
        notes = execution_notes(prepared)
    finally:
        devices.native_bf16.cache_clear()
    note = (
        "--amp counts on GPUs with native bf16 only (compute capability 8.0 or newer): "
        "set aside on this one (float32)"
    )
    assert notes == ([note] if noted else [])
    monkeypatch.setattr(devices, "cuda_device_count", lambda: 0)  # none to ask: nothing said
    assert execution_notes(prepared) == []


@pytest.mark.slow
def test_a_diverging_trial_is_recorded_and_the_others_go_on(cli, tmp_path, exploding_loss):
    result = cli(
        "run", "--config", SMOKE, "--out", tmp_path, "--losses", "exploding,dice", "--epochs", "3"
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    epochs = pd.read_csv(run_dir / "epochs.csv")
    exploded = epochs[epochs["loss"] == "exploding"]
    assert list(exploded["status"]) == ["ok", "diverged"]
    assert len(epochs[epochs["loss"] == "dice"]) == 3
    trial = json.loads(next((run_dir / "trials").glob("*exploding*")).read_text())
    assert (trial["status"], trial["diverged_epoch"]) == ("diverged", 2)
    assert "diverged" in result.stdout


@pytest.mark.slow
def test_three_seeds_give_intervals_and_marks(cli, tmp_path):
    result = cli("run", "--config", SMOKE, "--out", tmp_path, "--seeds", "3", "--epochs", "1")
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    summary = pd.read_csv(run_dir / "summary.csv")
    assert (summary["n_seeds"] == 3).all()
    assert summary["ci_low"].notna().all() and (summary["ci_low"] <= summary["ci_high"]).all()
    assert summary["score_std"].notna().all()
    best = summary[summary["is_best"]]
    assert len(best) == 1 and best["rank"].item() == 1
    assert "±" in result.stdout and "95% CI" in result.stdout
    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert sorted(set(epochs["seed"])) == [0, 1, 2]


@pytest.mark.slow
def test_imbalance_dial_runs_each_fraction_and_reports_the_sweep(cli, tmp_path):
    result = cli(
        "run",
        "--config",
        SMOKE,
        "--out",
        tmp_path,
        "--losses",
        "dice,bce",
        "--fg-fraction",
        "0.02,0.2",
        "--epochs",
        "1",
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert len(set(epochs["dataset"])) == 2
    meta = json.loads((run_dir / "run.json").read_text())
    measured = sorted(info["train_foreground_fraction"] for info in meta["datasets"].values())
    assert measured == pytest.approx([0.02, 0.2], abs=0.002)
    assert "fg fraction" in result.stdout.lower() or "foreground" in result.stdout.lower()
    plots = cli("report", run_dir, "--plots")
    assert plots.exit_code == 0, plots.output
    assert (run_dir / "plots" / "imbalance.png").stat().st_size > 1000


def test_report_plots_are_png_files(cli, smoke_run):
    _, run_dir = smoke_run
    result = cli("report", run_dir, "--plots")
    assert result.exit_code == 0, result.output
    pngs = sorted((run_dir / "plots").glob("*.png"))
    assert {path.name for path in pngs} >= {"learning_curves.png"}
    assert any(path.name.startswith("predictions") for path in pngs)
    for path in pngs:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_only_the_loss_differs_between_trials(cli, tmp_path):
    """focal(gamma=0) is bce: trained side by side they must match to the last digit,
    which holds only if both got the same initial weights, batches and augmentations."""
    result = cli("run", "--config", SMOKE, "--out", tmp_path, "--losses", "bce,focal(gamma=0)")
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    epochs = pd.read_csv(run_dir / "epochs.csv")
    bce = epochs[epochs["loss"] == "bce"].reset_index(drop=True)
    focal = epochs[epochs["loss"] == "focal(gamma=0.0)"].reset_index(drop=True)
    pd.testing.assert_frame_equal(bce[METRIC_COLUMNS], focal[METRIC_COLUMNS])


@pytest.mark.slow
@pytest.mark.parametrize(
    "executor",
    [
        pytest.param([], id="local"),
        pytest.param(["--executor", "ray", "--jobs", "1"], id="ray", marks=pytest.mark.ray),
    ],
)
def test_ctrl_c_keeps_finished_trials_and_says_how_to_resume(tmp_path, executor):
    if executor:
        pytest.importorskip("ray")
    out = tmp_path / "runs"
    env = {name: value for name, value in os.environ.items() if name != "RAY_ADDRESS"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "losscmp",
            "run",
            "--config",
            str(SMOKE),
            "--out",
            str(out),
            "--epochs",
            "6",
            *executor,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob("*/trials/*.json")):
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: to every process of the group
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    (trial,) = out.glob("*/trials/*.json")
    assert json.loads(trial.read_text())["status"] == "finished"
    assert f"--resume {trial.parent.parent}" in stderr


@pytest.mark.slow
def test_sigterm_stops_a_run_as_ctrl_c_does(cli, tmp_path):
    """SIGTERM (kill, timeout, a batch scheduler) ended the run on the spot with no word:
    exit -15, no resume line, and the shared data left to Python's resource tracker (a
    'leaked shared_memory objects' warning). Now it stops the workers as Ctrl-C does."""
    out = tmp_path / "runs"
    # in the order the printed resume command gives them
    args = ["--config", str(SMOKE), "--epochs", "6", "--out", str(out), "--jobs", "2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "losscmp", "run", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob("*/trials/*.json")):
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before its first trial file was seen"
    assert list(out.glob("*/trials/*.json")), "no trial file within 120 s"
    workers = worker_pids(process.pid)
    process.send_signal(signal.SIGTERM)  # to the main process only, as 'kill PID' sends it
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143
    (run_dir,) = [path for path in out.iterdir() if path.is_dir()]
    assert stderr.splitlines()[-1] == (
        f"losscmp: terminated (SIGTERM); finished trials are saved in {run_dir}. Finish the "
        f"run with: losscmp run {shlex.join(args)} --resume {run_dir}"
    )
    assert "leaked" not in stderr
    assert len(workers) >= 2 and not any(Path(f"/proc/{pid}").exists() for pid in workers)
    result = cli("run", *args, "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert len(list((run_dir / "trials").glob("*.json"))) == 3


@pytest.fixture
def one_epoch_run(cli, tmp_path):
    args = ["--config", str(SMOKE), "--out", str(tmp_path), "--losses", "dice,bce", "--epochs", "1"]
    result = cli("run", *args)
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    return args, run_dir


def test_resume_accepts_reordered_losses_and_adds_seeds(cli, one_epoch_run):
    args, run_dir = one_epoch_run
    first = {path.name: path.read_text() for path in (run_dir / "trials").glob("*.json")}
    reordered = [*args[:-4], "--losses", "bce,dice", "--epochs", "1"]
    result = cli("run", *reordered, "--seeds", "2", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    trials = {path.name: path.read_text() for path in (run_dir / "trials").glob("*.json")}
    assert len(trials) == 4
    assert all(trials[name] == content for name, content in first.items())
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["seeds"] == [0, 1] and len(meta["trials"]) == 4
    # The first command stays; the resuming one is added, with when it ran. Both are shell
    # lines of the options given, in the order `losscmp run --help` lists them.
    config, out = ["--config", str(SMOKE)], str(args[3])
    assert meta["command"] == shlex.join(
        ["losscmp", "run", *config, "--losses", "dice,bce", "--epochs", "1", "--out", out]
    )
    assert meta["resume_command"] == shlex.join(
        ["losscmp", "run", *config, "--losses", "bce,dice", "--epochs", "1", "--seeds", "2"]
        + ["--out", out, "--resume", str(run_dir)]
    )
    assert meta["started_at"] <= meta["resumed_at"] <= meta["finished_at"]


def test_run_json_keeps_the_options_a_config_file_gave(cli, tmp_path):
    """So the one-seed advice names 'seeds' in that file, not '--seeds'; a resume that adds
    seeds with the flag keeps the file's other options."""
    config = tmp_path / "run.yaml"
    config.write_text(SMOKE.read_text().replace("epochs: 2", "epochs: 1") + "seeds: 1\n")
    out = tmp_path / "results"
    result = cli("run", "--config", config, "--losses", "dice", "--out", out)
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    source = f"config file {config}"
    sources = json.loads((run_dir / "run.json").read_text())["option_sources"]
    assert sources["seeds"] == source and sources["epochs"] == source
    assert "losses" not in sources  # the flag gave them
    advice = f"One seed gives no interval or test: set 'seeds' to 3 or more in {source}."
    assert advice in " ".join(result.stdout.split())
    resumed = cli(
        "run", "--config", config, "--losses", "dice", "--seeds", "2", "--resume", run_dir
    )
    assert resumed.exit_code == 0, resumed.output
    after = json.loads((run_dir / "run.json").read_text())["option_sources"]
    assert after == {key: value for key, value in sources.items() if key != "seeds"}


def test_a_resume_with_nothing_to_train_keeps_the_runs_record(cli, tmp_path):
    """It set resumed_at and finished_at to the time of the resume: the report page gave
    the run a duration that counted the idle time between. The tables are still rebuilt."""
    from run_fixtures import write_run

    run_dir = write_run(tmp_path / "runs", quality={"dice": 0.8, "focal": 0.6}, seeds=(0,))
    run_json = (run_dir / "run.json").read_text()
    (run_dir / "epochs.csv").unlink()
    result = cli("run", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    assert "(2 finished trials kept)" in " ".join(result.stderr.split())
    # was 'executing: in this process, 2 threads', of nothing
    assert "nothing to train: every planned trial has finished\n" in result.stderr
    assert "executing:" not in result.stderr
    assert (run_dir / "run.json").read_text() == run_json
    assert (run_dir / "epochs.csv").is_file()
    page = (run_dir / "report.html").read_text()
    assert "2026-01-01 12:05:00+00:00 (5 min 0 s)" in page and "resumed" not in page


@pytest.fixture
def counted_rebuilds(monkeypatch):
    """Rebuilds of the tables, counted; each costs more than TABLES_SHARE (0) of a run."""
    import losscmp.results as results

    rebuilds = []
    rebuild = results.RunStore.rebuild_tables

    def counted(store, records=None) -> None:
        rebuilds.append(store.run_dir)
        rebuild(store, records)

    monkeypatch.setattr(results, "TABLES_SHARE", 0.0)
    monkeypatch.setattr(results.RunStore, "rebuild_tables", counted)
    return rebuilds


def test_a_run_rebuilds_its_tables_when_that_is_cheap_and_at_its_end(
    cli, tmp_path, counted_rebuilds
):
    """Each trial rebuilt the tables from every trial so far: 390 short trials spent 175 s
    on it, more than on training. A rebuild that would cost more than TABLES_SHARE of the
    run's time waits; the run ends with one, and the tables hold every trial."""
    from losscmp.results import RunStore

    args = ["--config", SMOKE, "--out", tmp_path, "--losses", "dice,bce,focal", "--epochs", "1"]
    result = cli("run", *args)
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.iterdir()
    assert counted_rebuilds == [run_dir, run_dir]  # as the run opens, and as it ends
    assert RunStore(run_dir).check_tables() == {}
    assert len(pd.read_csv(run_dir / "epochs.csv")) == 3


def test_a_stopped_run_leaves_its_tables_with_the_trials_written(
    cli, tmp_path, counted_rebuilds, monkeypatch
):
    """Ctrl-C after the second of three trials: the tables, deferred, still hold both."""
    import losscmp.runner as runner
    from losscmp.results import RunStore

    write_result = runner._write_result

    def stopped_after_two(store, *args) -> None:
        write_result(store, *args)
        if len(list(store.trials_dir.glob("*.json"))) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_write_result", stopped_after_two)
    args = ["--config", SMOKE, "--out", tmp_path, "--losses", "dice,bce,focal", "--epochs", "1"]
    assert cli("run", *args).exit_code == 130
    (run_dir,) = tmp_path.iterdir()
    assert len(counted_rebuilds) == 2
    assert RunStore(run_dir).check_tables() == {}
    assert len(pd.read_csv(run_dir / "epochs.csv")) == 2


def test_resume_refuses_another_model_or_a_damaged_run(cli, one_epoch_run):
    args, run_dir = one_epoch_run
    other_model = cli("run", *args, "--model", "small", "--resume", run_dir)
    assert other_model.exit_code == 2
    assert "model ('tiny' -> 'small')" in other_model.stderr
    meta = json.loads((run_dir / "run.json").read_text())
    meta["config"]["surprise"] = 1
    (run_dir / "run.json").write_text(json.dumps(meta))
    damaged = cli("run", *args, "--resume", run_dir)
    assert damaged.exit_code == 2
    assert "its config has 'surprise', an option this losscmp does not know" in damaged.stderr


def _edit_run_json(run_dir: Path, edit) -> None:
    meta = json.loads((run_dir / "run.json").read_text())
    edit(meta)
    (run_dir / "run.json").write_text(json.dumps(meta))


def _folder_state(run_dir: Path) -> dict[str, bytes]:
    return {str(path): path.read_bytes() for path in sorted(run_dir.rglob("*")) if path.is_file()}


def test_resume_refuses_a_config_that_lacks_an_option_the_run_had(cli, one_epoch_run):
    """Without 'epochs' in run.json's config the resume trained its missing trials for the
    default 8 epochs, beside trials of 1: refused, naming it, the folder untouched."""
    _, run_dir = one_epoch_run
    next((run_dir / "trials").glob("*__bce__*.json")).unlink()
    _edit_run_json(run_dir, lambda meta: meta["config"].pop("epochs"))
    before = _folder_state(run_dir)
    refused = cli("run", "--resume", run_dir)
    assert refused.exit_code == 2
    assert refused.stderr == (
        f"losscmp: error: {run_dir / 'run.json'} is damaged (its config lacks 'epochs'; a "
        "resume would train with the default instead of the run's own)\n"
    )
    assert _folder_state(run_dir) == before


def test_resume_refuses_a_run_json_without_what_it_keeps_or_checks(cli, one_epoch_run):
    """Without execution's threads the rest trained with this machine's (its cores /
    --jobs), without its fusion or all of it unfused; without device, model or datasets
    nothing was checked: refused, untouched. (Every schema-2 run.json has its execution.)"""
    _, run_dir = one_epoch_run
    next((run_dir / "trials").glob("*__bce__*.json")).unlink()
    whole = json.loads((run_dir / "run.json").read_text())
    kept = [("execution", "threads"), ("execution", "fused"), ("execution",)]
    for keys in [*kept, ("device",), ("model", "preset"), ("datasets",)]:
        meta = json.loads(json.dumps(whole))
        del (meta[keys[0]] if len(keys) == 2 else meta)[keys[-1]]
        (run_dir / "run.json").write_text(json.dumps(meta))
        before = _folder_state(run_dir)
        refused = cli("run", "--resume", run_dir, "--jobs", "2")
        assert refused.exit_code == 2, keys
        named = " ".join(map(repr, keys))
        assert refused.stderr == (
            f"losscmp: error: {run_dir / 'run.json'} is damaged (it lacks {named}, which a "
            "resume keeps or checks the rest of the run by)\n"
        )
        assert _folder_state(run_dir) == before


def test_resume_takes_no_amp_on_a_device_that_never_read_it(cli, one_epoch_run):
    """--amp counts on CUDA only: a CPU run resumed with --no-amp trains as it did (it was
    refused: 'changes amp (True -> False)'); a CUDA run's --amp still may not change."""
    from losscmp.config import build_config
    from losscmp.runner import config_changes

    _, run_dir = one_epoch_run
    next((run_dir / "trials").glob("*__bce__*.json")).unlink()
    assert cli("run", "--resume", run_dir, "--no-amp").exit_code == 0
    meta = json.loads((run_dir / "run.json").read_text())
    meta["config"]["amp"] = True
    meta["device"] = "cuda: NVIDIA H100 80GB HBM3"
    current = build_config(base={**meta["config"], "amp": False})
    assert config_changes(meta, current, run_dir) == ["amp (True -> False)"]


V100 = "cuda: Tesla V100-SXM2-16GB"


@pytest.mark.parametrize(
    ("capability", "resumed_on", "refused"),
    [
        ((7, 0), V100, False),  # float32 whatever --amp said, as the rest will be
        ((8, 0), "cuda: NVIDIA A100-SXM4-40GB", True),  # bf16 with --amp
        ((7, 5), "cuda: Tesla T4", True),  # the V100's own run is not asked: another GPU
    ],
    ids=["same-gpu-without-bf16", "gpu-with-bf16", "another-gpu"],
)
def test_resume_on_a_gpu_without_bf16_takes_no_amp(
    one_epoch_run, monkeypatch, capability, resumed_on, refused
):
    """A run on a V100 trained in float32, --amp or not (bf16 there is emulated): resumed
    on it with --no-amp it was refused ('changes amp (True -> False)') as a CPU run no
    longer was. The GPU faked as tests/test_executors.py fakes its capability."""
    from types import SimpleNamespace

    import torch

    from losscmp import devices
    from losscmp.config import build_config
    from losscmp.errors import LosscmpError
    from losscmp.runner import check_resumable

    _, run_dir = one_epoch_run
    meta = json.loads((run_dir / "run.json").read_text())
    meta["config"]["amp"] = True
    meta["device"] = V100
    current = build_config(base={**meta["config"], "amp": False})
    prepared = SimpleNamespace(
        plan=SimpleNamespace(config=current, selections=[]),
        settings=SimpleNamespace(
            preset=SimpleNamespace(name=meta["model"]["preset"]), device=torch.device("cuda", 0)
        ),
        executor=SimpleNamespace(describe_device=lambda device: resumed_on),
        datasets={},
    )
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability)
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(devices, "cuda_device_count", lambda: 1)
    devices.native_bf16.cache_clear()
    try:
        if refused:
            with pytest.raises(LosscmpError, match=r"changes amp \(True -> False\)"):
                check_resumable(meta, prepared, run_dir)
        else:
            check_resumable(meta, prepared, run_dir)
    finally:
        devices.native_bf16.cache_clear()


def test_resume_reads_a_config_made_before_the_options_added_since(cli, one_epoch_run):
    """lr_grid and tracking came after schema 2: their defaults are what such a run did."""
    _, run_dir = one_epoch_run

    def made_before(meta):
        del meta["config"]["lr_grid"], meta["config"]["tracking"]

    _edit_run_json(run_dir, made_before)
    assert cli("run", "--resume", run_dir).exit_code == 0


def test_resume_of_a_run_made_by_a_newer_losscmp_says_so(cli, one_epoch_run):
    _, run_dir = one_epoch_run
    _edit_run_json(run_dir, lambda meta: meta.update(schema_version=3))
    refused = cli("run", "--resume", run_dir)
    assert refused.exit_code == 2
    assert refused.stderr.endswith(
        "has schema version 3; this losscmp reads versions 1 and 2 (the run was made by a "
        "newer losscmp: update this one)\n"
    )


def test_a_resumed_run_keeps_the_device_auto_chose(one_epoch_run):
    """--device auto is pinned to what it chose when the run started (a GPU may have
    appeared since); an explicit --device still wins, and check_resumable judges it."""
    from losscmp.runner import resume_config

    _, run_dir = one_epoch_run
    meta = json.loads((run_dir / "run.json").read_text())
    meta["config"]["device"] = "auto"
    meta["device"] = "cuda: NVIDIA H100 80GB HBM3"
    (run_dir / "run.json").write_text(json.dumps(meta))
    assert resume_config(run_dir, None, {}).device == "cuda"
    assert resume_config(run_dir, None, {"device": "cpu"}).device == "cpu"
    meta["device"] = "cpu: x86_64"
    (run_dir / "run.json").write_text(json.dumps(meta))
    assert resume_config(run_dir, None, {}).device == "cpu"


def test_a_run_resumed_on_another_cpu_says_its_trials_round_differently(cli, one_epoch_run):
    """A CPU with other vector instructions trains to other numbers at the same threads
    (tests/test_report.py); --resume there used to add its trials to the folder silently."""
    from losscmp.devices import describe_device

    args, run_dir = one_epoch_run
    meta = json.loads((run_dir / "run.json").read_text())
    here = describe_device(torch.device("cpu"))
    assert meta["device"] == here
    meta["device"] = "cpu: AMD EPYC 7B12 (x86_64, AVX2)"
    (run_dir / "run.json").write_text(json.dumps(meta))
    result = cli("run", *args, "--seeds", "2", "--resume", run_dir)
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert f"started on cpu: AMD EPYC 7B12 (x86_64, AVX2) and continues on {here}" in said
    meta["device"] = here
    (run_dir / "run.json").write_text(json.dumps(meta))
    again = cli("run", *args, "--seeds", "3", "--resume", run_dir)
    assert again.exit_code == 0, again.output
    assert "continues on" not in again.stderr


def test_a_device_is_compared_by_what_decides_its_rounding():
    """A Ray cluster that grew trains alike; 'cpu: x86_64' (run.json before the model and
    instruction set were kept) cannot tell, and warning on every resume of such a run
    would be noise."""
    from losscmp.devices import rounding_key

    grown = ("cuda: Ray cluster, 4 GPUs (H100)", "cuda: Ray cluster, 8 GPUs (H100)")
    assert rounding_key(grown[0]) == rounding_key(grown[1]) == "cuda: Ray cluster (H100)"
    assert rounding_key("cuda: Ray cluster, 0.5 GPUs (H100, A100)") == (
        "cuda: Ray cluster (H100, A100)"
    )
    assert rounding_key("cuda: Ray cluster, 4 GPUs (A100)") != rounding_key(grown[0])
    assert rounding_key("cpu: x86_64") is None
    xeon = "cpu: Intel(R) Xeon(R) Processor (x86_64, AVX512)"
    assert rounding_key(xeon) == xeon != rounding_key("cpu: Intel(R) Xeon(R) (x86_64, AVX2)")


def adamw_kernels(monkeypatch) -> list[bool]:
    """Whether each AdamW built from now on is asked for torch's fused kernel."""
    asked: list[bool] = []
    original = torch.optim.AdamW

    def recording(params, **options):
        asked.append(bool(options.get("fused")))
        return original(params, **options)

    monkeypatch.setattr(torch.optim, "AdamW", recording)
    return asked


def resume_then_resume_as_older_version(cli, args, run_dir, meta, execution_key) -> None:
    """Retrain the dice trial by --resume twice: as the run is, then with ``execution_key``
    left out of run.json's execution, as a version before it wrote it."""
    trial_file = next((run_dir / "trials").glob("*dice*.json"))
    trial_file.unlink()
    assert cli("run", *args, "--resume", run_dir).exit_code == 0
    del meta["execution"][execution_key]
    (run_dir / "run.json").write_text(json.dumps(meta))
    trial_file.unlink()
    assert cli("run", *args, "--resume", run_dir).exit_code == 0
    assert trial_file.exists()


@pytest.mark.slow
def test_a_resumed_run_keeps_its_adamw_kernel(cli, one_epoch_run, monkeypatch):
    """The fused kernel rounds differently from torch's default loop, which the CPU used
    before run.json recorded the choice: such a run's missing trials keep the loop."""
    args, run_dir = one_epoch_run
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["execution"]["fused_adamw"] is True and meta["device"].startswith("cpu")
    asked = adamw_kernels(monkeypatch)
    resume_then_resume_as_older_version(cli, args, run_dir, meta, "fused_adamw")
    assert asked == [True, False]


def fused_model_sizes(monkeypatch) -> list[int]:
    """The number of copies of each fused model made from now on, in order."""
    import losscmp.fused

    sizes: list[int] = []
    original = losscmp.fused.fused_model

    def counting(model, count, settings):
        sizes.append(count)
        return original(model, count, settings)

    monkeypatch.setattr(losscmp.fused, "fused_model", counting)
    return sizes


@pytest.mark.slow
def test_a_resumed_fused_run_keeps_how_its_copies_ran(cli, tmp_path, monkeypatch):
    """On the CPU a fused model runs its copies one by one (as --fuse off does), each with
    weights of its own. Runs recorded before run.json's ``fused_own_weights`` ran them on
    views of stacked weights (AdamW rounds those otherwise), and before ``fused_per_copy``
    batched them under vmap: such a run's missing trials are trained that way again."""
    import losscmp.fused

    args = ["--config", str(SMOKE), "--out", str(tmp_path), "--losses", "dice,bce"]
    args += ["--epochs", "1", "--fuse", "on"]
    assert cli("run", *args).exit_code == 0
    (run_dir,) = tmp_path.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["execution"]["fused_per_copy"] is True and meta["device"].startswith("cpu")
    assert meta["execution"]["fused_own_weights"] is True
    made = []
    original = losscmp.fused.fused_model

    def recording(*args, **options):
        fused = original(*args, **options)
        own = isinstance(fused, losscmp.fused.SeparateCopies)
        made.append("own weights" if own else "views" if fused.per_copy else "vmap")
        return fused

    monkeypatch.setattr(losscmp.fused, "fused_model", recording)
    resume_then_resume_as_older_version(cli, args, run_dir, meta, "fused_own_weights")
    assert made == ["own weights", "views"]
    resume_then_resume_as_older_version(cli, args, run_dir, meta, "fused_per_copy")
    assert made == ["own weights", "views", "views", "vmap"]


def test_a_resumed_cpu_fused_group_trains_only_its_missing_trials(cli, tmp_path, monkeypatch):
    """Copies with weights of their own round as each alone: a resumed group need not train
    its finished trials again to give the missing one the numbers of an uninterrupted run
    (it trained all three, for one)."""

    args = ["--config", str(SMOKE), "--out", str(tmp_path), "--losses", "dice,bce,focal"]
    args += ["--epochs", "2", "--fuse", "on"]
    assert cli("run", *args).exit_code == 0
    (run_dir,) = tmp_path.iterdir()
    lost = next((run_dir / "trials").glob("*bce*.json"))
    before = json.loads(lost.read_text())
    lost.unlink()
    copies = fused_model_sizes(monkeypatch)
    result = cli("run", *args, "--resume", str(run_dir))
    assert result.exit_code == 0, result.output
    assert copies == [1]
    after = json.loads(lost.read_text())

    def scores(record):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in record["epochs"]]

    assert len(after["epochs"]) == 2 and scores(after) == scores(before)


def test_a_resumed_fused_run_keeps_the_groups_it_started_with(cli, tmp_path, monkeypatch):
    """Under vmap (CUDA) a copy rounds by its group: a run started by a losscmp that cut the
    losses into fused groups of 2 resumed in groups of this one's cap (16), and its missing
    trials rounded otherwise than the finished ones. run.json's execution records the cap;
    a run.json without it was made by a losscmp whose cap was 16."""
    import losscmp.fused
    import losscmp.runner

    args = ["--config", str(SMOKE), "--out", str(tmp_path), "--losses", "dice,bce,focal"]
    args += ["--epochs", "1", "--fuse", "on"]
    with monkeypatch.context() as older:
        older.setattr(losscmp.runner, "MAX_FUSED_LOSSES", 2)
        assert cli("run", *args).exit_code == 0  # groups {bce, dice} and {focal}
    (run_dir,) = tmp_path.iterdir()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["execution"]["fused_group_size"] == 2
    lost = [next((run_dir / "trials").glob(f"*__{loss}__*.json")) for loss in ("bce", "focal")]
    for trial_file in lost:
        trial_file.unlink()  # one trial of each group left to train

    def planned_models() -> str:
        result = cli("run", "--resume", str(run_dir), "--dry-run")
        assert result.exit_code == 0, result.output
        return result.output.rstrip().splitlines()[-1].split("(")[-1]

    assert planned_models() == "2 fused models of 1 loss)"  # not "1 fused model of 2 losses"
    copies = fused_model_sizes(monkeypatch)
    result = cli("run", *args, "--resume", str(run_dir))
    assert result.exit_code == 0, result.output
    assert copies == [1, 1]
    assert json.loads((run_dir / "run.json").read_text())["execution"]["fused_group_size"] == 2
    # Recorded without it: 16, what every earlier losscmp cut at, whatever the cap is now.
    del meta["execution"]["fused_group_size"]
    (run_dir / "run.json").write_text(json.dumps(meta))
    for trial_file in lost:
        trial_file.unlink()
    monkeypatch.setattr(losscmp.runner, "MAX_FUSED_LOSSES", 1)
    assert planned_models() == "1 fused model of 2 losses)"


def test_a_resumed_run_in_smaller_fused_groups_gets_a_worker_per_group(cli, tmp_path, monkeypatch):
    """Its jobs were counted in groups of this losscmp's cap (16): two fused models of one
    loss each to train read as one job, and '--jobs 2' ran them one after the other."""
    import losscmp.runner

    args = ["--config", str(SMOKE), "--out", str(tmp_path), "--losses", "dice,bce,focal"]
    args += ["--epochs", "1", "--fuse", "on"]
    with monkeypatch.context() as older:
        older.setattr(losscmp.runner, "MAX_FUSED_LOSSES", 1)
        assert cli("run", *args).exit_code == 0
    (run_dir,) = tmp_path.iterdir()
    for loss in ("bce", "focal"):
        next((run_dir / "trials").glob(f"*__{loss}__*.json")).unlink()
    result = cli("run", "--resume", str(run_dir), "--jobs", "2", "--dry-run")
    assert result.exit_code == 0, result.output
    assert ", jobs 2, fuse on" in result.output  # not 'jobs 1 (2 set: only 1 to run)'
    assert "2 worker processes, 1 thread each" in result.output


GRID_DATASET = "synthetic(fg_fraction=0.05,n_train=16,n_val=8,n_test={n_test})"


def grid_run(cli, out: Path, n_test: int) -> tuple[Path, pd.DataFrame]:
    result = cli(
        "run", "--config", SMOKE, "--out", out, "--epochs", "1", "--losses", "dice,focal",
        "--lr-grid", "1e-3,1e-2", "--seeds", "2", "--dataset", GRID_DATASET.format(n_test=n_test),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run_dir,) = out.iterdir()
    return run_dir, pd.read_csv(run_dir / "summary.csv")


@pytest.mark.slow
def test_lr_grid_trains_every_rate_and_the_choice_ignores_the_test_split(cli, tmp_path):
    run_dir, summary = grid_run(cli, tmp_path / "a", n_test=8)
    trials = [json.loads(path.read_text()) for path in (run_dir / "trials").glob("*.json")]
    assert len(trials) == 8  # 2 losses x 2 rates x 2 seeds
    assert sorted({trial["base_lr"] for trial in trials}) == [1e-3, 1e-2]
    assert len(summary) == 4 and summary.groupby("loss")["lr_chosen"].sum().tolist() == [1, 1]
    for loss, rows in summary.groupby("loss"):
        chosen = rows[rows["lr_chosen"]].iloc[0]
        assert chosen["val_score_mean"] == rows["val_score_mean"].max(), loss
    # Another test split (n_test 16: its own stream, train and validation untouched): the
    # validation scores and the choice stay exactly as they were; the test scores move.
    _, other = grid_run(cli, tmp_path / "b", n_test=16)
    columns = ["loss", "lr", "val_score_mean", "lr_chosen", "score_mean"]
    summary, other = (
        frame[columns].sort_values(["loss", "lr"]).reset_index(drop=True)
        for frame in (summary, other)
    )
    pd.testing.assert_frame_equal(summary[columns[:-1]], other[columns[:-1]])
    assert not np.allclose(summary["score_mean"], other["score_mean"])
    # --resume retrains a lost trial of the grid exactly
    lost = next(path for path in (run_dir / "trials").glob("*.json") if "lr0.01" in path.name)
    before = json.loads(lost.read_text())
    lost.unlink()
    args = ["--config", SMOKE, "--out", tmp_path / "a", "--epochs", "1", "--losses", "dice,focal"]
    grid = ["--lr-grid", "1e-3,1e-2", "--seeds", "2", "--dataset", GRID_DATASET.format(n_test=8)]
    result = cli("run", *args, *grid, "--resume", run_dir)
    assert result.exit_code == 0, result.output
    after = json.loads(lost.read_text())
    assert [row["val_dice"] for row in after["epochs"]] == [
        row["val_dice"] for row in before["epochs"]
    ]
    assert len(list((run_dir / "trials").glob("*.json"))) == 8


def test_fused_jobs_share_dataset_seed_and_learning_rate():
    from losscmp.plan import Trial
    from losscmp.runner import make_jobs

    trials = [Trial("d", loss, 0, lr) for lr in (1e-3, 1e-2) for loss in ("dice", "focal")]
    jobs = make_jobs(trials, fused=True)
    assert [[trial.id for trial in job.trials] for job in jobs] == [
        [trials[0].id, trials[1].id],
        [trials[2].id, trials[3].id],
    ]


def test_git_state_names_the_commit_and_edits_to_the_package(tmp_path):
    """run.json's git_commit and git_dirty: edited tracked code is not the commit's code;
    a file the checkout does not track (results, caches) does not count."""
    from losscmp.runner import git_state

    def git(*args):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    package = tmp_path / "losscmp"
    package.mkdir()
    (package / "train.py").write_text("LR = 3e-3\n")
    assert git_state(package) == (None, None)  # not a checkout
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "first")
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    assert git_state(package) == (head, False)
    (package / "notes.txt").write_text("untracked")
    assert git_state(package) == (head, False)
    (package / "train.py").write_text("LR = 1e-2\n")
    assert git_state(package) == (head, True)
    nested = tmp_path / "vendor" / "losscmp"  # a copy inside some other repository
    nested.mkdir(parents=True)
    assert git_state(nested) == (None, None)


def test_a_trial_ends_once_written_before_the_tracker_copies_it():
    """A tracker that waits (a server lost mid-run: MLflow retries for 4 minutes) counted
    as the ending trial's own time, which the time left averages: after one such wait a
    345-trial run said 9:36 left for 4:17 of trials, and was still 1.4 times long near its
    end."""
    from types import SimpleNamespace

    from losscmp.executors.base import TrialResult
    from losscmp.plan import Trial
    from losscmp.runner import _write_result

    said: list[str] = []
    store = SimpleNamespace(
        write_trial=lambda record, defer_tables: said.append("written"),
        record_failed=lambda trial_id, reason: said.append("written"),
    )
    tracker = SimpleNamespace(
        trial=lambda record: said.append("tracked"), failed=lambda trial: said.append("tracked")
    )
    prepared = SimpleNamespace(tracker=tracker)
    trial = Trial("synthetic", "dice", 0, 1e-3)
    outcome = SimpleNamespace(record={"status": "finished"}, panel_predictions=None)
    emit = lambda event: said.append(type(event).__name__)  # noqa: E731
    _write_result(store, prepared, TrialResult(trial, outcome), emit)
    _write_result(store, prepared, TrialResult(trial, failure="worker died"), emit)
    assert said == ["written", "TrialEnded", "tracked"] * 2


def test_resume_accepts_the_fusion_and_threads_the_run_already_trains_with(cli, one_epoch_run):
    """A run started with '--fuse auto' on the CPU trained unfused, and one started without
    --threads with the threads run.json records: naming those again changes nothing (it
    was refused as 'fuse ('auto' -> 'off')' and 'threads (None -> 1)'); another is refused,
    named by what the run trained with."""
    args, run_dir = one_epoch_run
    threads = json.loads((run_dir / "run.json").read_text())["execution"]["threads"]
    for same in (["--fuse", "off"], ["--threads", threads], ["--fuse", "auto"]):
        result = cli("run", *args, *same, "--resume", run_dir, "--dry-run")
        assert result.exit_code == 0, (same, result.output)
    fused = cli("run", *args, "--fuse", "on", "--resume", run_dir, "--dry-run")
    assert fused.exit_code == 2
    assert "fuse ('auto', which trained unfused -> 'on')" in fused.stderr
    more = cli("run", *args, "--threads", threads + 1, "--resume", run_dir, "--dry-run")
    assert more.exit_code == 2
    assert f"threads ({threads} -> {threads + 1})" in more.stderr
