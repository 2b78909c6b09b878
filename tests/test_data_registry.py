"""The dataset registry is the seam: a new dataset is one file plus one registration,
and everything that lists, fetches or checks datasets asks the entry."""

import re
from pathlib import Path

import pytest

from losscmp.config import build_config
from losscmp.data import dataset_status, download_dataset
from losscmp.errors import ParameterError


@pytest.fixture
def toy_dataset(monkeypatch):
    """A dataset added the way a new one is: one registration, its hooks on the entry."""
    from losscmp import data
    from losscmp.registry import Registry

    fetched = []
    registry = Registry("dataset")
    for entry in data.DATASET_REGISTRY:
        registry.add(entry)
    registry.register(
        "toy",
        "A toy set: --dataset toy",
        status=lambda root: {"present": False, "path": str(root / "toy"), "how_to_get": "fetch"},
        download=lambda dest, **options: fetched.append(dest) or dest,
        run_options=frozenset({"data_dir"}),
    )(lambda **params: None)
    monkeypatch.setattr(data, "DATASET_REGISTRY", registry)
    return fetched


def test_a_new_dataset_is_listed_downloaded_and_given_data_dir_by_its_entry(toy_dataset, tmp_path):
    from losscmp import data

    rows = {row["name"]: row for row in dataset_status(tmp_path)}
    assert list(rows) == [entry.name for entry in data.DATASET_REGISTRY]
    assert list(rows)[-1] == "toy"
    assert rows["toy"] == {
        "name": "toy",
        "description": "A toy set: --dataset toy",
        "present": False,
        "path": str(tmp_path / "toy"),
        "how_to_get": "fetch",
    }
    assert download_dataset("toy", tmp_path / "d") == tmp_path / "d"
    assert toy_dataset == [tmp_path / "d"]
    assert build_config(dataset="toy", data_dir="/d").data_dir == "/d"


def test_the_refusals_name_the_datasets_whose_entries_can(toy_dataset, tmp_path):
    """Which datasets download, or read --data-dir, is what their entries say (``download``,
    ``run_options``), never a list of names: the refusals name every one, the new one too."""
    from losscmp import data

    entries = list(data.DATASET_REGISTRY)
    fetchable = [f"'{entry.name}'" for entry in entries if entry.download is not None]
    no_download = next(entry.name for entry in entries if entry.download is None)
    assert "'toy'" in fetchable
    only = f"only {' and '.join(fetchable)} have"
    with pytest.raises(
        ParameterError, match=re.escape(f"'{no_download}' has nothing to download ({only})")
    ):
        download_dataset(no_download, tmp_path)
    readers = [entry.name for entry in entries if "data_dir" in entry.run_options]
    unread = next(entry.name for entry in entries if "data_dir" not in entry.run_options)
    assert "toy" in readers
    with pytest.raises(ParameterError, match=f"read by --dataset {' or '.join(readers)} only"):
        build_config(dataset=unread, data_dir="/d")


@pytest.mark.parametrize(
    ("spec", "num_classes", "mode"),
    [
        ("synthetic(n_train=8,n_val=4,n_test=4)", None, "binary"),
        ("synthetic(n_train=8,n_val=4,n_test=4,num_classes=3)", None, "multiclass"),
        ("folder", 2, "binary"),
        ("folder", 3, "multiclass"),
    ],
)
def test_a_dataset_says_its_mode_before_loading_as_loaded(tmp_path, spec, num_classes, mode):
    """``--losses all`` is chosen from the mode before any data is read: the entry's
    ``mode_of`` must say what loading makes."""
    from fixtures_data import make_folder

    from losscmp.data import dataset_mode, load_dataset

    if num_classes is not None:
        make_folder(tmp_path, num_classes=num_classes)
        spec = f"folder(path={tmp_path},num_classes={num_classes})"
    assert dataset_mode(spec) == mode
    assert load_dataset(spec, image_size=32).mode == mode


def test_every_dataset_says_its_mode_from_its_parameters():
    from losscmp.data import DATASET_REGISTRY, dataset_mode

    assert all(entry.mode_of is not None for entry in DATASET_REGISTRY)
    assert dataset_mode("pets") == "binary"
    assert dataset_mode("pets(mode=trimap)") == "multiclass"  # without the files


def test_a_dataset_without_mode_of_is_refused_for_all_only(toy_dataset, monkeypatch):
    """``mode_of`` is optional on an entry: only 'all' and patterns need the mode before
    loading, and named losses never ask for it."""
    from losscmp import data
    from losscmp.plan import plan_run

    with pytest.raises(ParameterError, match="dataset 'toy' does not say its mode.*name the"):
        data.dataset_mode("toy")

    def no_mode(spec):
        raise AssertionError(f"asked for {spec}'s mode")

    monkeypatch.setattr(data, "dataset_mode", no_mode)
    plan = plan_run(build_config(losses="dice,focal", epochs=1))
    assert [trial.loss for trial in plan.trials] == ["dice", "focal"]


def help_text(result) -> str:
    return " ".join(result.stdout.replace("│", " ").split())


def test_download_help_and_folder_come_from_the_entries(toy_dataset, cli, tmp_path, monkeypatch):
    """'datasets download --help' named pets and its folder, written out in cli.py: a new
    dataset that downloads was not offered there, and went to pets' folder by default."""
    monkeypatch.setenv("COLUMNS", "200")  # each help on one line
    text = help_text(cli("datasets", "download", "--help"))
    assert "NAME Dataset to fetch: pets or toy. [required]" in text
    assert "[default: pets: datasets/oxford-iiit-pet; toy: datasets/toy]" in text
    monkeypatch.chdir(tmp_path)
    assert cli("datasets", "download", "toy").exit_code == 0
    assert toy_dataset == [Path("datasets/toy")]
