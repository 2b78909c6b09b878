"""The dataset registry is the seam: a new dataset is one file plus one registration,
and everything that lists, fetches or checks datasets asks the entry."""

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
    rows = {row["name"]: row for row in dataset_status(tmp_path)}
    assert list(rows) == ["synthetic", "pets", "folder", "toy"]
    assert rows["toy"] == {
        "name": "toy",
        "description": "A toy set: --dataset toy",
        "present": False,
        "path": str(tmp_path / "toy"),
        "how_to_get": "fetch",
    }
    assert download_dataset("toy", tmp_path / "d") == tmp_path / "d"
    assert toy_dataset == [tmp_path / "d"]
    with pytest.raises(ParameterError, match="nothing to download \\(only 'pets' and 'toy' have"):
        download_dataset("folder", tmp_path)
    assert build_config(dataset="toy", data_dir="/d").data_dir == "/d"
    with pytest.raises(ParameterError, match="read by --dataset pets or toy only"):
        build_config(dataset="synthetic", data_dir="/d")
