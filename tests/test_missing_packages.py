"""A run whose packages are not all installed (``pip install --no-deps``, a bare GPU image)
is refused before any folder: one line on stderr naming the package and the command that
installs it, exit status 2. Was: every trial failed with ModuleNotFoundError, was trained
again and failed again, and the run folder held nothing but failures (exit status 1).

A missing package is simulated honestly: None in ``sys.modules`` makes both
``importlib.util.find_spec`` and ``import`` of it fail, so a run that would import it
anyway fails too.
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from conftest import REPO
from fixtures_data import make_folder, make_pets_tree
from run_fixtures import write_run

from losscmp.data import DATASET_REGISTRY, dataset_modules
from losscmp.data.base import AUGMENTATION_MODULES
from losscmp.dependencies import OPTIONAL_MODULES, PACKAGES, RUN_MODULES
from losscmp.errors import dependency_hint

DECLARED = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
# Imported before a run's checks can run (the command line itself, numpy by the data
# package; PyYAML by --config), so not checked by them.
IMPORTED_FIRST = {"typer", "rich", "numpy", "pyyaml"}


def declared(package: str) -> str:
    """pyproject.toml's requirement of ``package``: 'albumentations>=1.4.24'."""
    (requirement,) = [line for line in DECLARED if line.startswith(package + ">")]
    return requirement


def missing(monkeypatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def refused_line(who: str, package: str) -> str:
    return (
        f"losscmp: error: {who} needs {package}, which is not installed: "
        f"pip install '{declared(package)}'\n"
    )


def folder_data(tmp: Path) -> tuple[list[str], str]:
    make_folder(tmp / "data", count=12)
    return ["--dataset", f"folder:{tmp / 'data'}"], f"folder(path={tmp / 'data'})"


def pets_data(tmp: Path) -> tuple[list[str], str]:
    make_pets_tree(tmp / "pets", trainval=10, test=4, quirks=False)
    return ["--dataset", "pets", "--data-dir", str(tmp / "pets")], "pets"


@pytest.mark.parametrize("how", [[], ["--dry-run"], ["--estimate"]], ids=["run", "dry", "est"])
@pytest.mark.parametrize("data", [folder_data, pets_data], ids=["folder", "pets"])
def test_a_dataset_augmented_with_albumentations_needs_it(cli, tmp_path, monkeypatch, data, how):
    missing(monkeypatch, "albumentations")
    dataset, label = data(tmp_path)
    result = cli("run", "--losses", "dice", *dataset, "--out", tmp_path / "runs", *how)
    assert result.exit_code == 2
    assert result.stderr == refused_line(f"dataset '{label}'", "albumentations")
    assert result.stdout == ""
    assert not (tmp_path / "runs").exists()


def test_a_resumed_folder_run_is_refused_alike(cli, tmp_path, monkeypatch):
    _, label = folder_data(tmp_path)
    run_dir = write_run(tmp_path / "runs", quality={"dice": 0.8}, seeds=(0,), datasets=(label,))
    before = sorted((path, path.stat().st_mtime_ns) for path in run_dir.rglob("*"))
    missing(monkeypatch, "albumentations")
    result = cli("run", "--resume", run_dir)
    assert result.exit_code == 2
    assert result.stderr == refused_line(f"dataset '{label}'", "albumentations")
    assert sorted((path, path.stat().st_mtime_ns) for path in run_dir.rglob("*")) == before


def test_packages_every_run_imports_are_named_together(cli, tmp_path, monkeypatch):
    """The synthetic default needs no albumentations, but the model's smp and the scores'
    scipy it does: one line names both, and installs both."""
    missing(monkeypatch, "segmentation_models_pytorch", "scipy", "albumentations")
    result = cli("run", "--losses", "dice", "--out", tmp_path / "runs", "--dry-run")
    assert result.exit_code == 2
    smp, scipy = declared("segmentation-models-pytorch"), declared("scipy")
    assert result.stderr == (
        "losscmp: error: a run needs segmentation-models-pytorch and scipy, which are not "
        f"installed: pip install '{smp}' '{scipy}'\n"
    )
    assert not (tmp_path / "runs").exists()


def test_a_run_and_its_dataset_missing_packages_share_one_line(cli, tmp_path, monkeypatch):
    dataset, label = folder_data(tmp_path)
    missing(monkeypatch, "albumentations", "scipy")
    result = cli("run", "--losses", "dice", *dataset, "--out", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.stderr == (
        f"losscmp: error: a run needs scipy and dataset '{label}' needs albumentations, which "
        f"are not installed: pip install '{declared('scipy')}' '{declared('albumentations')}'\n"
    )


def test_a_mistake_in_the_data_is_told_before_a_missing_package(cli, tmp_path, monkeypatch):
    missing(monkeypatch, "albumentations")
    result = cli("run", "--dataset", f"folder:{tmp_path / 'nope'}", "--out", tmp_path / "r")
    assert result.exit_code == 2
    assert "nope" in result.stderr and "albumentations" not in result.stderr


@pytest.mark.slow
def test_the_synthetic_default_trains_without_albumentations(cli, tmp_path, monkeypatch):
    """Its augmentation is the dihedral one (numpy): a 1-epoch run trains and reports, and
    would have failed had anything imported albumentations."""
    missing(monkeypatch, "albumentations")
    synthetic = "synthetic(n_train=8,n_val=4,n_test=4)"
    result = cli(
        "run", "--losses", "dice", "--dataset", synthetic, "--epochs", "1", "--image-size", "32",
        "--out", tmp_path / "runs",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "summary.csv").is_file()


def test_the_dataset_entries_say_what_their_augmentation_imports():
    assert dataset_modules("synthetic") == ()
    assert dataset_modules("pets") == dataset_modules("folder:x") == ("albumentations",)
    assert {entry.augmentation for entry in DATASET_REGISTRY} <= set(AUGMENTATION_MODULES)


def test_the_checked_packages_are_pyprojects_dependencies_every_one():
    """Every declared dependency is checked, or imported before the checks run; every module
    an augmentation imports has its package here."""
    names = {requirement.split(">")[0].split("<")[0] for requirement in DECLARED}
    assert set(RUN_MODULES.values()) | set(OPTIONAL_MODULES.values()) | IMPORTED_FIRST == names
    modules = {module for listed in AUGMENTATION_MODULES.values() for module in listed}
    assert modules <= set(PACKAGES)


def test_the_hint_takes_pyprojects_floor():
    assert dependency_hint(["albumentations", "scipy"]) == (
        f"pip install '{declared('albumentations')}' '{declared('scipy')}'"
    )


def test_the_hint_from_a_source_tree_not_installed(monkeypatch):
    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "requires", not_installed)
    assert dependency_hint(["albumentations"]) == "pip install -e . in the losscmp checkout"


def test_a_report_needs_pandas_told_before_anything_is_written(cli, tmp_path, monkeypatch):
    run_dir = write_run(tmp_path / "runs", quality={"dice": 0.8}, seeds=(0,))
    before = sorted((path, path.stat().st_mtime_ns) for path in run_dir.rglob("*"))
    missing(monkeypatch, "pandas")
    result = cli("report", run_dir, "--csv", tmp_path / "out.csv")
    assert result.exit_code == 2
    assert result.stderr == refused_line("losscmp report", "pandas")
    assert result.stdout == ""
    assert not (tmp_path / "out.csv").exists()
    assert sorted((path, path.stat().st_mtime_ns) for path in run_dir.rglob("*")) == before


@pytest.mark.parametrize(
    ("option", "module", "package"),
    [(["--html", "page.html"], "matplotlib", "matplotlib"), (["--plots"], "PIL", "pillow")],
    ids=["html", "plots"],
)
def test_a_report_that_draws_needs_what_it_draws_with(
    cli, tmp_path, monkeypatch, option, module, package
):
    run_dir = write_run(tmp_path / "runs", quality={"dice": 0.8}, seeds=(0,))
    missing(monkeypatch, module)
    result = cli("report", run_dir, *[tmp_path / arg if "." in arg else arg for arg in option])
    assert result.exit_code == 2
    assert result.stderr == refused_line(option[0], package)
    assert not (tmp_path / "page.html").exists() and not (run_dir / "plots").exists()


def test_a_report_that_draws_nothing_needs_no_matplotlib(cli, tmp_path, monkeypatch):
    run_dir = write_run(tmp_path / "runs", quality={"dice": 0.8}, seeds=(0,))
    missing(monkeypatch, "matplotlib", "PIL")
    result = cli("report", run_dir, "--csv", tmp_path / "out.csv")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out.csv").is_file()


def test_a_mistake_in_the_report_command_is_told_before_a_missing_package(
    cli, tmp_path, monkeypatch
):
    run_dir = write_run(tmp_path / "runs", quality={"dice": 0.8}, seeds=(0,))
    missing(monkeypatch, "pandas")
    result = cli("report", run_dir, "--metric", "dcie")
    assert result.exit_code == 2
    assert "dcie" in result.stderr and "pandas" not in result.stderr
