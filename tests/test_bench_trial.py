"""benchmarks/trial.py's --stub-model: both sides train the stub, so the timed difference
is the library's work outside the model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

import losscmp.train

REPO = Path(__file__).resolve().parents[1]


def trial_script():
    spec = importlib.util.spec_from_file_location("bench_trial", REPO / "benchmarks" / "trial.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_stub_model_replaces_the_unet_on_both_sides(monkeypatch, capsys):
    monkeypatch.setattr(losscmp.train, "build_model", losscmp.train.build_model)  # restored
    script = trial_script()
    built = []
    stub = script.stub_model
    monkeypatch.setattr(script, "stub_model", lambda *args: built.append(args) or stub(*args))
    script.main(["--stub-model", "--epochs", "1", "--repeats", "1", "--image-size", "32"])
    out = capsys.readouterr().out
    assert "stub model" in out.splitlines()[0]
    assert "losscmp throughput / plain loop" in out
    assert "work outside the model: losscmp" in out and "target" not in out
    # warm-up and one timed run of each side: four models, all stubs, seeded with 0
    assert len(built) == 4 and all(args[1:] == (1, None, 0) for args in built)
    assert isinstance(stub(None, 1, None, 0), torch.nn.Sequential)
