"""The packages a run imports once its folder exists, checked to be installed before.

losscmp declares them all (pyproject.toml), but an install can still lack one: ``pip
install --no-deps``, a bare GPU image. Found only where a trial imports it, every trial
failed, was trained again and failed again, and the run folder held nothing but failures;
refused here, it is one line before any folder, with the command that installs it.

``importlib.util.find_spec`` of a top-level name finds a module without importing it (torch
takes seconds), so the check costs a few milliseconds and ``losscmp --help`` stays light.
It sees whether the module is there, not whether it imports: a package whose own
dependencies are missing still fails where it is imported.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from losscmp.errors import LosscmpError, dependency_hint
from losscmp.spec import Spec

# What every run imports after its folder exists, top-level module -> the package (as
# pyproject.toml names it) that installs it: the trials' torch, their model's smp (and
# torchvision, which smp imports), scipy for the boundary scores of every evaluation and
# the distance maps, and the report's pandas, matplotlib and Pillow, which a run writes
# once every trial has trained. Left out: typer, rich and numpy, imported before any check
# can run, and PyYAML, read for a --config file before the plan too.
RUN_MODULES: dict[str, str] = {
    "torch": "torch",
    "torchvision": "torchvision",
    "segmentation_models_pytorch": "segmentation-models-pytorch",
    "scipy": "scipy",
    "pandas": "pandas",
    "matplotlib": "matplotlib",
    "PIL": "pillow",
}
# Modules that only some runs import (a dataset's augmentation's: data.base.AUGMENTATION_MODULES).
OPTIONAL_MODULES: dict[str, str] = {"albumentations": "albumentations"}
PACKAGES: dict[str, str] = {**RUN_MODULES, **OPTIONAL_MODULES}
# What ``losscmp report`` imports beyond its command line: the tables' pandas, always; and
# what --plots draws with (the file outputs say what they need: ``render.Renderer.modules``).
REPORT_MODULES = ("pandas",)
FIGURE_MODULES = ("matplotlib", "PIL")


def check_installed(datasets: Iterable[Spec]) -> None:
    """Refuse, in one line naming them and the command that installs them, a run whose
    modules are not all installed: those of every run, and those the ``datasets`` need (their
    entries say, by their augmentation). Each dataset's name checked first (``check_dataset``)."""
    from losscmp.data import dataset_modules

    needs = {"a run": list(RUN_MODULES)}
    for spec in datasets:
        needs.setdefault(f"dataset '{spec.label}'", list(dataset_modules(spec)))
    _refuse_missing(needs)


def check_report_installed(outputs: Iterable[str], plots: bool) -> None:
    """Refuse, in one line, a ``report`` whose modules are not all installed: pandas for
    every report, and what the file ``outputs`` (``render.RENDERERS`` names) and ``plots``
    draw with. Checked after the command's own mistakes, before anything is written."""
    from losscmp.render import RENDERERS

    needs = {"losscmp report": list(REPORT_MODULES)}
    for name in outputs:
        needs[f"--{name}"] = list(RENDERERS[name].modules)
    if plots:
        needs["--plots"] = list(FIGURE_MODULES)
    _refuse_missing(needs)


def _refuse_missing(needs: dict[str, list[str]]) -> None:
    """``needs``: who needs them -> top-level modules; a LosscmpError naming each package
    not installed once, under the first who needs it."""
    missing: dict[str, list[str]] = {}  # who needs them -> the packages, each named once
    named: set[str] = set()
    for who, modules in needs.items():
        for module in modules:
            package = PACKAGES[module]
            if package not in named and not installed(module):
                named.add(package)
                missing.setdefault(who, []).append(package)
    if missing:
        raise LosscmpError(missing_line(missing))


def installed(module: str) -> bool:
    """Whether the top-level ``module`` can be found (not imported: see the module's doc).
    A module set to None in ``sys.modules`` (which makes importing it raise) is not."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a damaged install, or a module without a spec
        return False


def missing_line(missing: dict[str, list[str]]) -> str:
    """``dataset 'pets' needs albumentations, which is not installed: pip install ...``"""
    packages = [package for listed in missing.values() for package in listed]
    needs = " and ".join(f"{who} needs {_listed(listed)}" for who, listed in missing.items())
    verb = "is" if len(packages) == 1 else "are"
    return f"{needs}, which {verb} not installed: {dependency_hint(packages)}"


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
