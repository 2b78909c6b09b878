"""benchmarks/boundary.py's options: a size that is no HxW is one line of argparse's, not a
traceback from the middle of the run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def boundary_script():
    path = REPO / "benchmarks" / "boundary.py"
    spec = importlib.util.spec_from_file_location("bench_boundary", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sizes", "64"], "argument --sizes: '64' is not a size HxW (did you mean 64x64?)"),
        (
            ["--sizes", "64x64,64y64"],
            "argument --sizes: '64y64' is not a size HxW, such as 375x500",
        ),
        (["--sizes", "8x8"], "argument --sizes: '8x8': each side must be at least 16"),
        (["--images", "0"], "argument --images: must be a whole number >= 1, got '0'"),
    ],
)
def test_a_bad_option_is_one_line_of_argparse_s(capsys, args, message):
    with pytest.raises(SystemExit) as exited:
        boundary_script().main(args)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines()[-1].endswith(f": error: {message}")  # prog: argv[0]
    assert captured.out == ""


def test_sizes_are_read_as_height_by_width():
    assert boundary_script().image_sizes("64x64, 375X500") == [(64, 64), (375, 500)]
