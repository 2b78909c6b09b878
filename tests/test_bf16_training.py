"""Training, fused training and evaluation under bf16 autocast, as on a GPU with native
bf16, run on the CPU with the GPU's autocast rules (``train_helpers.cuda_style_bf16_on_cpu``):
the model computes in bf16, and no bf16 tensor may reach a loss, a metric or a histogram.

Every registered loss trains a short trial (``train_trial``: a step, an evaluation of both
splits, the boundary scores of the last epoch) and, all of a mode at once, a fused group
through vmap (CUDA's way). tests/test_fake_cuda.py runs the same passes on a fake GPU
with CUDA's own autocast (dtypes and devices, no values); tests/test_cuda.py compares
the numbers on a real one.
"""

from __future__ import annotations

import math

import pytest
import torch
from losses_helpers import loss_mode_pairs, random_logits, random_target
from train_helpers import cuda_style_bf16_on_cpu, tiny_settings

import losscmp.fused
import losscmp.train
from losscmp import metrics
from losscmp.data import load_dataset
from losscmp.fused import FusedModel, _Float32BatchNorm, train_fused_group
from losscmp.plan import Trial
from losscmp.spec import parse_spec
from losscmp.train import all_finite, train_trial

PAIRS = loss_mode_pairs()
# One batch of four to train on, two images per evaluated split: 16 px keeps a trial short.
SPECS = {
    "binary": "synthetic(fg_fraction=0.3,n_train=4,n_val=2,n_test=2)",
    "multiclass": "synthetic(fg_fraction=0.3,n_train=4,n_val=2,n_test=2,num_classes=3)",
}


@pytest.fixture(scope="module")
def datasets():
    return {mode: load_dataset(spec, image_size=16, seed=0) for mode, spec in SPECS.items()}


@pytest.fixture
def bf16(monkeypatch):
    with cuda_style_bf16_on_cpu(monkeypatch):
        yield


@pytest.fixture
def dtypes(monkeypatch) -> dict[str, set]:
    """The dtypes the trainers' models answer in, their losses are given and a fused model's
    BatchNorm layers are given, as they run."""
    seen = {"model": set(), "loss": set(), "fused batch norm": set()}

    def model_answers(build):
        def recorded(*args, **kwargs):
            model = build(*args, **kwargs)
            model.register_forward_hook(lambda _, args, out: seen["model"].add(out.dtype))
            return model

        return recorded

    def loss_is_given(make):
        def recorded(*args, **kwargs):
            loss = make(*args, **kwargs)
            loss.register_forward_pre_hook(lambda _, args: seen["loss"].add(args[0].dtype))
            return loss

        return recorded

    monkeypatch.setattr(losscmp.train, "build_model", model_answers(losscmp.train.build_model))
    for module in (losscmp.train, losscmp.fused):
        monkeypatch.setattr(module, "make_loss", loss_is_given(module.make_loss))
    fused_call = FusedModel.__call__

    def fused_answers(self, images):
        out = fused_call(self, images)
        seen["model"].add(out.dtype)
        return out

    monkeypatch.setattr(FusedModel, "__call__", fused_answers)
    batch_norm = _Float32BatchNorm.forward

    def batch_norm_is_given(self, input):
        seen["fused batch norm"].add(input.dtype)
        return batch_norm(self, input)

    monkeypatch.setattr(_Float32BatchNorm, "forward", batch_norm_is_given)
    return seen


def settings(epochs: int = 1, fused_per_copy: bool = True):
    return tiny_settings(epochs=epochs, amp=True, fused_per_copy=fused_per_copy)


def assert_finite_numbers(record: dict) -> None:
    """Every number of the record's epoch rows and image rows is finite."""
    assert record["status"] == "finished", record["loss"]
    for row in [*record["epochs"], *record["images"]]:
        for key, value in row.items():
            if isinstance(value, float):
                assert math.isfinite(value), (record["loss"], key)


@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=[f"{n}-{m}" for n, m in PAIRS])
def test_a_bf16_trial_of_every_loss_gives_finite_numbers(name, mode, datasets, bf16, dtypes):
    """The model answers in bf16, the loss is given float32, and every number the trial
    records (train loss, both splits' scores, threshold, AP, ECE, HD95, NSD) is finite."""
    data = datasets[mode]
    record = train_trial(Trial(data.spec, name, 0), parse_spec(name), data, settings()).record
    assert_finite_numbers(record)
    assert "test_dice" in record["epochs"][0]
    assert dtypes["model"] == {torch.bfloat16} and dtypes["loss"] == {torch.float32}


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_a_bf16_fused_group_of_every_loss_under_vmap_gives_finite_numbers(
    mode, datasets, bf16, dtypes
):
    """Every loss of the mode as one fused model under vmap (CUDA's way) and bf16: two
    epochs, each copy finished with finite numbers, its loss given float32 logits. The
    convolutions run in bf16 (what BatchNorm is given); the output is float32, the last
    convolution's bias (float32, one per copy) added to its bf16 product under vmap."""
    data = datasets[mode]
    names = [name for name, its_mode in PAIRS if its_mode == mode]
    trials = [Trial(data.spec, name, 0) for name in names]
    specs = {name: parse_spec(name) for name in names}
    outcomes = train_fused_group(trials, specs, data, settings(2, fused_per_copy=False))
    for trial, outcome in zip(trials, outcomes, strict=True):
        assert outcome.record["loss"] == trial.loss
        assert len(outcome.record["epochs"]) == 2
        assert_finite_numbers(outcome.record)
        assert outcome.panel_predictions.shape == (2, 16, 16)
    assert dtypes["fused batch norm"] == {torch.bfloat16}
    assert dtypes["model"] == dtypes["loss"] == {torch.float32}


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_the_metrics_of_bf16_logits_are_those_of_the_same_values_in_float32(mode):
    """A model's bf16 output, scored inside the autocast block or outside: the counts,
    histogram, finiteness and hard predictions of the same values in float32."""
    target = random_target(mode, size=32)
    target[..., :2] = 255
    logits = (4 * random_logits(mode, size=32)).to(torch.bfloat16)
    logits.view(-1)[:3] = torch.tensor([0.0, -0.0, 1e-3])  # at the threshold and beside it

    def scored(values):
        counts = metrics.confusion_counts(values, target, mode=mode, ignore_index=255)
        found = [counts, all_finite(values), losscmp.train.hard_prediction(values, mode)]
        if mode == "binary":
            found.append(metrics.probability_histogram(values, target, ignore_index=255))
        return found

    expected = scored(logits.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = scored(logits)
    for found in (inside, scored(logits)):
        for value, wanted in zip(found, expected, strict=True):
            assert value.dtype == wanted.dtype
            assert torch.equal(value, wanted)
