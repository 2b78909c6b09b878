"""`losscmp run` on real-layout data: the Oxford-IIIT Pet fixture tree and a plain folder."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from fixtures_data import make_folder, make_pets_tree, needs_albumentations
from test_data_download import pets_archives, server  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def pets_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("oxford-iiit-pet")
    make_pets_tree(root, trainval=20, test=6, quirks=True)
    return root


def _only_run(out):
    (run_dir,) = [path for path in out.iterdir() if path.is_dir()]
    return run_dir


@needs_albumentations
@pytest.mark.parametrize(
    ("dataset", "losses", "classes"),
    [
        ("pets", "dice,bce", ["background", "pet"]),
        ("pets(mode=trimap)", "dice,ce", ["background", "pet", "border"]),
    ],
)
def test_pets_fixture_runs_binary_and_trimap(cli, tmp_path, pets_dir, dataset, losses, classes):
    result = cli(
        "run",
        "--losses",
        losses,
        "--dataset",
        dataset,
        "--data-dir",
        pets_dir,
        "--epochs",
        "1",
        "--image-size",
        "64",
        "--device",
        "cpu",
        "--out",
        tmp_path,
    )
    assert result.exit_code == 0, result.output
    run_dir = _only_run(tmp_path)
    meta = json.loads((run_dir / "run.json").read_text())
    (info,) = meta["datasets"].values()
    assert info["class_names"] == classes  # background first: metrics average the others
    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert sorted(set(epochs["loss"])) == sorted(losses.split(","))
    assert epochs["val_dice"].between(0, 1).all()
    if "trimap" in dataset:
        assert any(column.startswith("val_dice_") for column in epochs.columns)


@needs_albumentations
def test_folder_dataset_runs(cli, tmp_path):
    make_folder(tmp_path / "data", count=12, mask_suffix="_mask")
    out = tmp_path / "runs"
    result = cli(
        "run",
        "--losses",
        "dice,focal",
        "--dataset",
        f"folder(path={tmp_path / 'data'},mask_suffix=_mask)",
        "--epochs",
        "1",
        "--image-size",
        "64",
        "--device",
        "cpu",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    epochs = pd.read_csv(_only_run(out) / "epochs.csv")
    assert len(epochs) == 2


def test_folder_shorthand_reports_a_missing_folder(cli, tmp_path):
    result = cli("run", "--dataset", f"folder:{tmp_path / 'nope'}", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert "nope" in result.stderr
    assert not (tmp_path / "r").exists()


def test_datasets_list_shows_presence_and_how_to_get(cli, tmp_path):
    result = cli("datasets", "--root", tmp_path)
    assert result.exit_code == 0
    for text in ("synthetic", "pets", "folder", "losscmp datasets download pets"):
        assert text in result.stdout


@needs_albumentations
def test_download_through_the_cli_then_train(cli, tmp_path, monkeypatch, pets_archives):  # noqa: F811
    """`losscmp datasets download pets` against a local server, then a run on what it fetched."""
    import functools

    from losscmp.data import download

    local = functools.partial(download.download_pets, archives=pets_archives)
    monkeypatch.setattr(download, "download_pets", local)
    target = tmp_path / "datasets" / "oxford-iiit-pet"
    fetched = cli("datasets", "download", "pets", "--data-dir", target)
    assert fetched.exit_code == 0, fetched.output
    listing = cli("datasets", "--root", tmp_path / "datasets")
    pets_row = next(line for line in listing.stdout.splitlines() if "pets" in line)
    assert "yes" in pets_row
    result = cli(
        "run",
        "--losses",
        "dice",
        "--dataset",
        "pets",
        "--data-dir",
        target,
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        tmp_path / "runs",
    )
    assert result.exit_code == 0, result.output


@needs_albumentations
def test_resume_finds_a_dataset_that_moved_with_data_dir(cli, tmp_path):
    """--data-dir may change on --resume: the stored config is not checked against the
    old location (only the current options are checked against the filesystem)."""
    first = tmp_path / "first"
    make_pets_tree(first, trainval=12, test=4, quirks=False)
    common = ["--losses", "dice,bce", "--epochs", "1", "--image-size", "32", "--device", "cpu"]
    result = cli("run", *common, "--dataset", "pets", "--data-dir", first, "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    run_dir = _only_run(tmp_path / "r")
    (bce,) = (run_dir / "trials").glob("*bce*.json")
    bce.unlink()
    moved = first.rename(tmp_path / "moved")
    resumed = cli("run", "--resume", run_dir, "--data-dir", moved)
    assert resumed.exit_code == 0, resumed.output
    assert bce.is_file()


@needs_albumentations
def test_resume_refuses_data_that_changed_since_the_run_started(cli, tmp_path, monkeypatch):
    """Trials of one run must see the same data: a resume on edited files, or on another
    folder that a relative path finds from elsewhere, is refused (naming where the run was
    started) and leaves the run as it was; the same data found again resumes."""
    project = tmp_path / "project"
    make_folder(project / "data", count=12, seed=0)
    monkeypatch.chdir(project)
    common = ["--losses", "dice,bce", "--epochs", "1", "--image-size", "32", "--device", "cpu"]
    result = cli("run", *common, "--dataset", "folder:data", "--out", "runs")
    assert result.exit_code == 0, result.output
    run_dir = _only_run(project / "runs").resolve()
    meta_before = (run_dir / "run.json").read_bytes()
    assert json.loads(meta_before)["working_dir"] == str(project)
    (bce,) = (run_dir / "trials").glob("*bce*.json")
    bce.unlink()

    elsewhere = tmp_path / "elsewhere"
    make_folder(elsewhere / "data", count=12, seed=1)  # same names, other pixels
    monkeypatch.chdir(elsewhere)
    refused = cli("run", "--resume", run_dir)
    assert refused.exit_code == 2
    assert "the data of folder(path=data) is not what this run trained on" in refused.stderr
    assert f"the run was started in {project}" in refused.stderr
    assert (run_dir / "run.json").read_bytes() == meta_before
    assert not bce.exists()

    monkeypatch.chdir(project)
    mask = sorted((project / "data" / "masks").iterdir())[0]
    original = mask.read_bytes()
    (elsewhere / "data" / "masks" / mask.name).replace(mask)  # one mask edited in place
    refused = cli("run", "--resume", run_dir)
    assert refused.exit_code == 2
    assert "started in" not in refused.stderr  # from the run's own folder
    mask.write_bytes(original)
    resumed = cli("run", "--resume", run_dir)
    assert resumed.exit_code == 0, resumed.output
    assert bce.is_file()


@needs_albumentations
def test_resume_of_a_run_without_a_fingerprint_checks_what_it_recorded(cli, tmp_path):
    """A run made before data fingerprints were kept: its split sizes and foreground
    fractions stand in (a folder this version reads differently changes them)."""
    make_folder(tmp_path / "data", count=12)
    common = ["--losses", "dice,bce", "--epochs", "1", "--image-size", "32", "--device", "cpu"]
    dataset = ["--dataset", f"folder:{tmp_path / 'data'}"]
    result = cli("run", *common, *dataset, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    run_dir = _only_run(tmp_path / "runs")
    meta = json.loads((run_dir / "run.json").read_text())
    (info,) = meta["datasets"].values()
    del info["fingerprint"]
    as_recorded = info["train_foreground_fraction"]
    info["train_foreground_fraction"] = as_recorded + 0.01
    (run_dir / "run.json").write_text(json.dumps(meta))
    next((run_dir / "trials").glob("*bce*.json")).unlink()
    refused = cli("run", "--resume", run_dir)
    assert refused.exit_code == 2
    assert "is not what this run trained on" in refused.stderr
    info["train_foreground_fraction"] = as_recorded
    (run_dir / "run.json").write_text(json.dumps(meta))
    resumed = cli("run", "--resume", run_dir)
    assert resumed.exit_code == 0, resumed.output


@needs_albumentations
def test_a_cache_the_full_disk_refused_is_recorded_and_told_once(cli, tmp_path, monkeypatch):
    """run.json said 'read-only' for a full disk, and nothing told why every run decoded
    the images again."""
    import errno

    from losscmp.data import cache

    def full(stream, **arrays):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cache.np, "savez", full)
    make_folder(tmp_path / "data", count=12)
    out = tmp_path / "runs"
    common = ["--epochs", "1", "--image-size", "32", "--device", "cpu", "--out", out]
    result = cli(
        "run", "--losses", "dice,focal", "--dataset", f"folder:{tmp_path / 'data'}", *common
    )
    assert result.exit_code == 0, result.output
    # Full in the data folder, then in the user's cache (np.savez fails everywhere here).
    note = "the disk is full): every run decodes them again"
    assert result.output.count(note) == 1
    assert "the decoded images were not cached (the data folder: the disk is full; " in (
        result.output
    )
    (dataset,) = json.loads((_only_run(out) / "run.json").read_text())["datasets"].values()
    assert dataset["cache"] == "disk full"


@needs_albumentations
def test_a_read_only_data_folder_is_cached_in_the_users_cache_with_the_same_numbers(cli, tmp_path):
    """Every run decoded the images again where the data folder could not be written; the
    user's cache serves the next run, whose numbers are those of the run that decoded."""
    from losscmp.data import cache

    data = tmp_path / "data"
    make_folder(data, count=12)
    (data / cache.CACHE_DIRNAME).write_bytes(b"a file where the cache folder goes")
    user = cache.user_cache_folder(data)
    runs = []
    for out in (tmp_path / "decoded", tmp_path / "cached"):
        common = ["--epochs", "1", "--image-size", "32", "--device", "cpu", "--threads", "1"]
        result = cli(
            "run", "--losses", "dice", "--dataset", f"folder:{data}", *common, "--out", out
        )
        assert result.exit_code == 0, result.output
        runs.append((result.output, _only_run(out)))
    (decoded_output, decoded), (cached_output, cached) = runs
    assert f"the decoded images are cached in {user}, not in the data folder" in decoded_output
    assert "the decoded images" not in cached_output  # read back: nothing to tell
    infos = [json.loads((run / "run.json").read_text())["datasets"] for run in (decoded, cached)]
    (first,), (second,) = (info.values() for info in infos)
    assert (first["cache"], first["cache_dir"]) == ("written", str(user))
    assert (second["cache"], second["cache_dir"]) == ("hit", str(user))
    before, after = (pd.read_csv(run / "epochs.csv") for run in (decoded, cached))
    metrics = [column for column in before.columns if "seconds" not in column]
    assert len(metrics) > 5
    pd.testing.assert_frame_equal(before[metrics], after[metrics])
