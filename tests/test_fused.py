"""Fused training: the losses of one seed trained as one stacked model match their
sequential trials (``train_trial``): exactly with the copies one by one (the CPU), within
measured tolerances under vmap (CUDA's way, run here on the CPU with ``vmap=True``); and a
diverging copy leaves the others alone."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest
import torch
from train_helpers import cuda_style_bf16_on_cpu, one_step_fused_and_alone, tiny_settings

from losscmp.data import load_dataset
from losscmp.fused import train_fused_group
from losscmp.plan import Trial
from losscmp.spec import parse_spec
from losscmp.train import train_trial

BINARY = "synthetic(fg_fraction=0.2,n_train=8,n_val=4,n_test=8)"  # 32 px: two batches of four
ONE_BATCH = "synthetic(fg_fraction=0.2,n_train=4,n_val=4,n_test=4)"
MULTICLASS = "synthetic(fg_fraction=0.2,n_train=8,n_val=4,n_test=8,num_classes=3)"
SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


@pytest.fixture(scope="module")
def binary_data():
    return load_dataset(BINARY, image_size=32, seed=0)


@pytest.fixture(scope="module")
def multiclass_data():
    return load_dataset(MULTICLASS, image_size=32, seed=0)


def settings(epochs: int, vmap: bool = False):
    """``vmap``: the copies batched as on CUDA, not one by one as the CPU runs them."""
    return tiny_settings(epochs=epochs, fused_per_copy=not vmap)


def settings_amp():
    return tiny_settings(epochs=1, amp=True, fused_per_copy=False)  # CUDA's way


def trials_of(data, losses: list[str], seed: int = 0) -> tuple[list[Trial], dict]:
    specs = {label: parse_spec(label) for label in losses}
    return [Trial(data.spec, label, seed) for label in losses], specs


def fused_and_sequential(data, losses: list[str], epochs: int = 2, vmap: bool = True):
    trials, specs = trials_of(data, losses)
    fused = train_fused_group(trials, specs, data, settings(epochs, vmap))
    sequential = [train_trial(t, specs[t.loss], data, settings(epochs)) for t in trials]
    return fused, sequential


def _image_mean(record, which: str, key: str) -> float:
    values = [row[key] for row in record["images"] if row["which"] == which and key in row]
    return sum(values) / len(values) if values else 0.0


def differences(fused, sequential) -> dict[str, float]:
    """Largest |fused - sequential| per measure: validation metrics (absolute), train loss
    (relative), per-image scores (absolute); checks that the records have the same shape."""
    worst: dict[str, float] = {
        "val": 0.0, "test": 0.0, "threshold": 0.0, "train_loss": 0.0, "image": 0.0, "hd95": 0.0
    }  # fmt: skip
    for one, other in zip(fused, sequential, strict=True):
        a, b = one.record, other.record
        assert a.keys() == b.keys()
        for key in ("trial_id", "loss", "status", "diverged_epoch", "best_epoch", "loss_params"):
            assert a[key] == b[key], key
        assert len(a["epochs"]) == len(b["epochs"])
        for row, expected in zip(a["epochs"], b["epochs"], strict=True):
            assert row.keys() == expected.keys()
            assert row["lr"] == expected["lr"] and row["status"] == expected["status"]
            for key in row:
                measure = key.partition("_")[0] if key.startswith(("val_", "test_")) else key
                if measure in ("val", "test", "threshold"):
                    worst[measure] = max(worst[measure], abs(row[key] - expected[key]))
            gap = abs(row["train_loss"] - expected["train_loss"]) / abs(expected["train_loss"])
            worst["train_loss"] = max(worst["train_loss"], gap)
        assert [(r["which"], r["image"]) for r in a["images"]] == [
            (r["which"], r["image"]) for r in b["images"]
        ]
        for row, expected in zip(a["images"], b["images"], strict=True):
            assert row.keys() == expected.keys()
        # Compared as the report reads them: means over the images (of each which). One
        # pixel that flips near p = 0.5 moves one image's Dice by up to 0.02 and its HD95
        # by up to 1 px (measured), but the mean hardly.
        for which in ("best", "final"):
            for key in ("dice", "iou", "nsd", "hd95"):
                gap = abs(_image_mean(a, which, key) - _image_mean(b, which, key))
                measure = "hd95" if key == "hd95" else "image"
                worst[measure] = max(worst[measure], gap)
        assert one.panel_predictions.shape == other.panel_predictions.shape
    return worst


def test_one_fused_step_equals_separate_steps():
    """One vmapped step of three stacked copies (dice, bce, boundary) against three models
    stepped alone: BatchNorm running statistics and AdamW moments within 1e-5 (measured: 1.2e-7
    and 1.6e-8 absolute; moments within 2.5e-6 of each tensor's largest value).

    Parameters agree within 1e-5 except where AdamW's first update lr·g/(|g| + eps) is
    ill-conditioned: for a gradient near eps (1e-8) the batched kernels' different
    summation order (1e-10) moves the update by up to 1e-4 (4 to 8 of a copy's 766k
    elements here). So those are held to 2·lr, the most one step can move a weight, and the
    rest to 1e-5."""
    data = load_dataset(ONE_BATCH, image_size=32, seed=0)
    setup = settings(epochs=1, vmap=True)
    fused_losses, fused, alone = one_step_fused_and_alone(data, ["dice", "bce", "boundary"], setup)
    fused_state = fused.optimizer.state
    for k, (loss, model, optimizer) in enumerate(alone):
        assert fused_losses[k] == pytest.approx(loss, rel=1e-6)
        for name, param in model.named_parameters():
            mine = fused.params[name][k].detach()
            state = optimizer.state[param]  # every weight is in the forward pass
            moments = fused_state[fused.params[name]]
            assert moments["step"] == state["step"] == 1
            for key in ("exp_avg", "exp_avg_sq"):
                gap = (moments[key][k] - state[key]).abs().max().item()
                assert gap <= 1e-5, (name, key)
            gap = (mine - param.detach()).abs()
            well_posed = state["exp_avg"].abs() / (1 - 0.9) > 1e-6  # the step's |gradient|
            assert gap[well_posed].max() <= 1e-5, name
            assert gap.max() <= 2 * setup.lr, name
        for name, buffer in model.named_buffers():
            assert (fused.buffers[name][k] - buffer).abs().max().item() <= 1e-5, name


def test_a_fused_model_stacks_only_the_weights_its_forward_uses():
    """The tiny preset cuts ResNet-18 at depth 3, but smp keeps its last two stages: 93 % of
    the weights, which each of the K stacked copies held though no step ever reads them
    (16 copies of 32 px: 2.3 GB resident at the peak, now 1.3 GB; unfused 0.95 GB)."""
    from losscmp.fused import FusedModel
    from losscmp.model import build_model

    setup = settings(epochs=1)
    model = build_model(setup.preset, 1, None, seed=0)
    fused = FusedModel(model, 2, setup)
    fused(torch.randn(2, 3, 32, 32)).sum().backward()
    unused = [name for name, param in fused.params.items() if param.grad is None]
    assert unused == []
    assert sum(param.numel() for param in fused.params.values()) == 2 * 765_737


@pytest.mark.parametrize("dataset", [ONE_BATCH, ONE_BATCH.replace(")", ",num_classes=3)")])
def test_a_fused_step_under_bf16_autocast_as_on_cuda(monkeypatch, dataset):
    """The GPU's mixed precision, on the CPU (``cuda_style_bf16_on_cpu``): the fused model's
    convolutions run in bf16 and its BatchNorm gets bf16 input, which functorch's batch-norm
    rule once handed to the kernel beside float32 statistics (the CPU kernel refuses that;
    ``fused._Float32BatchNorm``). One step against each copy stepped alone under the same
    autocast: losses within 1e-3 relative (measured 1.2e-5 to 6.1e-5), BatchNorm running
    statistics within 1e-2 (measured 1.3e-3 to 2.1e-3: bf16 activations). Gradients are
    not compared: in bf16 two layouts of the same model alone already differ by 13-18 %
    (relative L2 per tensor), so the trials are compared by what they report (test_cuda)."""
    data = load_dataset(dataset, image_size=32, seed=0)
    losses = ["dice", "bce", "boundary"] if data.mode == "binary" else ["dice", "ce", "focal"]
    with cuda_style_bf16_on_cpu(monkeypatch):
        fused_losses, fused, alone = one_step_fused_and_alone(data, losses, settings_amp())
    for k, (loss, model, _) in enumerate(alone):
        assert math.isfinite(fused_losses[k])
        assert fused_losses[k] == pytest.approx(loss, rel=1e-3)
        for name, buffer in model.named_buffers():
            if buffer.is_floating_point():
                assert (fused.buffers[name][k] - buffer).abs().max().item() <= 1e-2, name


def test_the_cuda_style_autocast_casts_a_vmapped_convolution(monkeypatch):
    """The emulation above is not vacuous: with it, a vmapped convolution yields bf16."""
    convolutions = [torch.nn.Conv2d(3, 4, 3, bias=False) for _ in range(2)]
    params, buffers = torch.func.stack_module_state(convolutions)

    def call(params, buffers, images):
        return torch.func.functional_call(convolutions[0], (params, buffers), (images,))

    images = torch.randn(2, 3, 8, 8)
    for emulated, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        with contextlib.ExitStack() as stack:
            if emulated:
                stack.enter_context(cuda_style_bf16_on_cpu(monkeypatch))
            stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
            assert torch.vmap(call, in_dims=(0, 0, None))(params, buffers, images).dtype == dtype


@pytest.mark.parametrize("dataset", [BINARY, MULTICLASS])
def test_a_fused_group_on_the_cpu_is_its_sequential_trials_bit_for_bit(dataset):
    """The copies one by one, each a channels_last model of its own, round exactly as models
    trained alone: every number of every record (but the seconds) and the panels equal
    ``--fuse off``'s (a full group through the CLI: below). The losses include target maps
    (boundary's and hausdorff_dt's distance maps) and classes (multiclass)."""
    data = load_dataset(dataset, image_size=32, seed=0)
    binary = ["dice", "bce", "boundary", "hausdorff_dt"]
    fused, sequential = fused_and_sequential(
        data, binary if data.mode == "binary" else ["dice", "ce", "focal"], vmap=False
    )
    for mine, alone in zip(fused, sequential, strict=True):
        assert mine.record["status"] == "finished"
        assert without_seconds(mine.record) == without_seconds(alone.record)
        assert (mine.panel_predictions == alone.panel_predictions).all()
    assert len({outcome.record["epochs"][-1]["val_dice"] for outcome in fused}) > 1


def test_a_fused_group_matches_its_sequential_trials(binary_data):
    """Under vmap, max |fused - sequential| over 2 epochs, measured for trial seed 0 (this test) and
    the largest over seeds 0-3: validation metrics 1.2e-3 (8.5e-3), test metrics 2.1e-3
    (8.4e-3), train loss 5.5e-5 (7.4e-4) relative, per-image scores (means over the test
    images) 2.3e-3 (4.7e-3), HD95 0.05 px (0.05 px); the threshold chosen on validation
    the same (one 0.01 step apart for seed 3). The sequential trainer runs the model
    channels_last and the fused one does not, so their convolutions round differently,
    and AdamW's first steps amplify that. (Seed 1: one loss's validation Dice of its two
    epochs is closer than that, and the best epoch differs.)
    Tolerance, above the worst seed: 1.5e-2, 1.5e-3, 1e-2, 0.1 px, one threshold step."""
    fused, sequential = fused_and_sequential(binary_data, ["dice", "bce", "focal"])
    worst = differences(fused, sequential)
    assert worst["val"] <= 1.5e-2 and worst["test"] <= 1.5e-2
    assert worst["threshold"] <= 0.01 + 1e-9
    assert worst["train_loss"] <= 1.5e-3
    assert worst["image"] <= 1e-2 and worst["hd95"] <= 0.1
    for outcome in fused:
        record = outcome.record
        assert record["status"] == "finished" and record["diverged_epoch"] is None
        assert [row["epoch"] for row in record["epochs"]] == [1, 2]
        assert {row["which"] for row in record["images"]} == {"best", "final"}
        assert outcome.panel_predictions.shape == (4, 32, 32)
        assert 0 < record["epochs"][-1]["val_dice"] < 1


@pytest.mark.parametrize("vmap", [False, True])
def test_a_diverging_copy_is_recorded_and_leaves_the_others_alone(
    binary_data, exploding_loss, vmap
):
    """The NaN copy trains a whole epoch with NaN weights inside the stack, then is sliced
    out; the other copies' records equal, to the last digit, those of a group without it."""
    setup = settings(epochs=3, vmap=vmap)
    trials, specs = trials_of(binary_data, ["dice", exploding_loss, "bce"])
    steps, rows = [], []
    with_nan = train_fused_group(
        trials,
        specs,
        binary_data,
        setup,
        on_step=lambda trial, step, total: steps.append((trial.loss, step, total)),
        on_epoch=lambda trial, row: rows.append((trial.loss, row["epoch"], row["status"])),
    )
    without = train_fused_group([trials[0], trials[2]], specs, binary_data, setup)

    diverged = with_nan[1].record
    assert (diverged["status"], diverged["diverged_epoch"]) == ("diverged", 2)
    assert [row["status"] for row in diverged["epochs"]] == ["ok", "diverged"]
    assert diverged["epochs"][1]["train_loss"] is None
    alone = train_trial(trials[1], specs[exploding_loss], binary_data, setup).record
    assert (alone["status"], alone["diverged_epoch"]) == ("diverged", 2)
    assert diverged["epochs"][1].keys() == alone["epochs"][1].keys()
    assert diverged["best_epoch"] == alone["best_epoch"] == 1
    assert len(diverged["images"]) == len(alone["images"])

    for mine, reference in zip([with_nan[0], with_nan[2]], without, strict=True):
        assert mine.record["status"] == "finished"
        assert without_seconds(mine.record) == without_seconds(reference.record)
        assert (mine.panel_predictions == reference.panel_predictions).all()
    assert rows == [
        ("dice", 1, "ok"),
        (exploding_loss, 1, "ok"),
        ("bce", 1, "ok"),
        (exploding_loss, 2, "diverged"),
        ("dice", 2, "ok"),
        ("bce", 2, "ok"),
        ("dice", 3, "ok"),
        ("bce", 3, "ok"),
    ]
    per_trial = {loss: [step for name, step, _ in steps if name == loss] for loss, *_ in rows}
    assert per_trial == {"dice": [1, 2] * 3, exploding_loss: [1, 2] * 2, "bce": [1, 2] * 3}


def test_a_loss_that_raises_in_a_group_is_named_in_every_trials_failure(binary_data, raising_loss):
    """The whole group fails with it: dice and bce were recorded as failed with the raising
    loss's "ValueError: the loss broke" alone, as if they had broken."""
    from losscmp.executors.base import failure_reason

    trials, specs = trials_of(binary_data, ["dice", raising_loss, "bce"])
    with pytest.raises(ValueError) as raised:
        train_fused_group(trials, specs, binary_data, settings(epochs=2))
    assert failure_reason(raised.value) == (
        "ValueError: the loss broke (raised by loss 'raising' of a fused group: --fuse off "
        "trains each loss alone)"
    )
    alone = raised.type("the loss broke")
    assert failure_reason(alone) == "ValueError: the loss broke"


def without_seconds(record: dict) -> dict:
    rows = [
        {key: value for key, value in row.items() if key != "seconds"} for row in record["epochs"]
    ]
    return {**{key: value for key, value in record.items() if key != "seconds"}, "epochs": rows}


def test_losses_with_target_maps_train_in_a_fused_group(binary_data):
    """Under vmap: boundary and hausdorff_dt (signed distance) and distance_weighted_bce (object
    distance) get their maps from one loader pass. Max |fused - sequential|, measured for
    trial seed 0 (this test) and the largest over seeds 0-3: validation and test metrics
    5.1e-3 (1.9e-2), train loss 3.5e-3 (3.5e-3) relative (hausdorff_dt: its thresholded
    prediction distance map jumps when a pixel flips), per-image Dice/IoU/NSD (means)
    2.2e-3 (6.1e-3), HD95 0.11 px (0.11 px). Tolerance: 3e-2, 6e-3, 2e-2 and 0.5 px."""
    losses = ["boundary", "hausdorff_dt", "distance_weighted_bce"]
    fused, sequential = fused_and_sequential(binary_data, losses)
    worst = differences(fused, sequential)
    assert worst["val"] <= 3e-2 and worst["test"] <= 3e-2
    assert worst["train_loss"] <= 6e-3
    assert worst["image"] <= 2e-2 and worst["hd95"] <= 0.5
    assert all(outcome.record["status"] == "finished" for outcome in fused)
    boundary = fused[0].record
    assert boundary["loss_params"] == sequential[0].record["loss_params"]


def test_a_multiclass_group_matches_its_sequential_trials(multiclass_data):
    """Three classes, under vmap. Max |fused - sequential|, measured for trial seed 0 (this
    test) and the largest over seeds 0-3: validation metrics (per-class ones included) 7.2e-3
    (2.7e-2), test metrics 4.9e-3 (1.2e-2), train loss 6.2e-4 (6.2e-4) relative, per-image
    scores (means) 8e-4 (4.8e-3), HD95 0.02 px (0.07 px).
    Tolerance: 4e-2, 2e-3, 1e-2 and 0.5 px."""
    fused, sequential = fused_and_sequential(multiclass_data, ["dice", "ce", "focal"])
    worst = differences(fused, sequential)
    assert worst["val"] <= 4e-2 and worst["test"] <= 4e-2
    assert worst["train_loss"] <= 2e-3
    assert worst["image"] <= 1e-2 and worst["hd95"] <= 0.5
    row = fused[1].record["epochs"][-1]
    assert {"val_dice_background", "val_dice_class1", "val_dice_class2"} <= row.keys()
    assert all(math.isfinite(row[key]) for key in row if key.startswith("val_"))
    assert fused[1].panel_predictions.max() <= 2


def test_a_group_must_share_dataset_and_seed(binary_data):
    trials, specs = trials_of(binary_data, ["dice", "bce"])
    mixed = [trials[0], Trial(binary_data.spec, "bce", seed=1)]
    with pytest.raises(ValueError, match="one dataset and seed"):
        train_fused_group(mixed, specs, binary_data, settings(epochs=1))
    with pytest.raises(ValueError, match="at least one trial"):
        train_fused_group([], specs, binary_data, settings(epochs=1))


def test_a_group_must_share_its_learning_rate(binary_data):
    """One AdamW and one cosine schedule serve the whole group: one rate."""
    mixed = [Trial(binary_data.spec, "dice", 0, 1e-3), Trial(binary_data.spec, "bce", 0, 1e-2)]
    specs = {label: parse_spec(label) for label in ("dice", "bce")}
    with pytest.raises(ValueError, match="share one learning rate"):
        train_fused_group(mixed, specs, binary_data, settings(epochs=1))


def test_a_model_whose_outputs_overflow_has_diverged_alone_and_fused(binary_data):
    """At a learning rate of 1e6 the weights stay finite (about 1e8) and so does the
    training loss, but in eval mode the activations overflow to inf and the logits read
    NaN: scores of such a model (NaN read as background) must not be reported."""
    setup = tiny_settings(epochs=2, lr=1e6)
    trials, specs = trials_of(binary_data, ["bce", "dice"])
    alone = [train_trial(t, specs[t.loss], binary_data, setup).record for t in trials]
    fused = [outcome.record for outcome in train_fused_group(trials, specs, binary_data, setup)]
    for record in alone + fused:
        assert (record["status"], record["diverged_epoch"]) == ("diverged", 1)
        (row,) = record["epochs"]
        assert row["status"] == "diverged" and math.isfinite(row["train_loss"])
        assert "val_dice" not in row


def test_evaluation_says_whether_every_output_was_finite(binary_data):
    from losscmp.model import build_model
    from losscmp.train import evaluate

    setup = tiny_settings()
    model = build_model(setup.preset, 1, None, seed=0)
    assert evaluate(model, binary_data, setup, "val").finite is True
    with torch.no_grad():
        model.segmentation_head[0].bias.fill_(float("inf"))
    assert evaluate(model, binary_data, setup, "val").finite is False


def test_a_running_statistic_overflowed_to_inf_counts_as_a_diverged_weight():
    """Training normalises by the batch's own statistics and stays finite; every
    evaluation divides by the running variance."""
    from losscmp.train import finite_weights, learned_state

    norm = torch.nn.BatchNorm2d(3)
    assert finite_weights(learned_state(norm.parameters(), norm.buffers())).item()
    norm.running_var[1] = float("inf")
    assert finite_weights(norm.parameters()).item()
    assert not finite_weights(learned_state(norm.parameters(), norm.buffers())).item()


@pytest.mark.parametrize(
    "error",
    [
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        # cuBLAS's and cuDNN's own, which torch raises as a RuntimeError
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
        RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED"),
    ],
    ids=["torch", "cublas", "cudnn"],
)
def test_running_out_of_memory_in_a_loss_is_the_groups_not_the_losss(
    binary_data, monkeypatch, error
):
    """``executors.base.failed`` says what to change for a fused group out of memory; the
    loss that happened to allocate last is not blamed (cuBLAS's and cuDNN's were)."""
    from losscmp.executors.base import failure_reason
    from losscmp.losses.overlap import DiceLoss

    def out_of_memory(self, logits, target, **maps):
        raise error

    monkeypatch.setattr(DiceLoss, "forward", out_of_memory)
    trials, specs = trials_of(binary_data, ["bce", "dice"])
    with pytest.raises(type(error)) as raised:
        train_fused_group(trials, specs, binary_data, settings(epochs=1))
    assert failure_reason(raised.value) == f"out of memory: {error}"


def test_a_resumed_group_stops_once_none_of_its_wanted_trials_trains(binary_data, exploding_loss):
    """A resumed group trains its finished trials again (so that the unfinished one rounds as
    in the whole group); once that one diverged, the group trained on for nothing, sending
    no event (only wanted trials report): a long run's worker was then taken for hung."""
    trials, specs = trials_of(binary_data, ["dice", exploding_loss, "bce"])
    steps = []
    outcomes = train_fused_group(
        trials,
        specs,
        binary_data,
        settings(epochs=3),
        on_step=lambda trial, step, total: steps.append((trial.loss, step)),
        wanted={trials[1].id},
    )
    assert steps.count(("dice", 1)) == 2  # epochs 1 and 2, not 3
    diverged = outcomes[1].record
    assert (diverged["status"], diverged["diverged_epoch"]) == ("diverged", 2)
    whole = train_fused_group(trials, specs, binary_data, settings(epochs=3))[1].record
    assert without_seconds(diverged) == without_seconds(whole)


# 15 binary losses (distance maps among them: boundary, hausdorff_dt, distance_weighted_bce)
# and one that diverges in epoch 2: 16 copies, a full group (config.MAX_FUSED_LOSSES).
FULL_GROUP = (
    "balanced_bce,bce,bce_dice,boundary,combo,dice,dice_focal,dice_topk,distance_weighted_bce,"
    "f1,focal,focal_tversky,generalized_dice,hausdorff_dt,jaccard"
)


@pytest.mark.slow
def test_a_full_fused_group_on_the_cpu_writes_the_epochs_of_fuse_off(cli, tmp_path, exploding_loss):
    """epochs.csv of ``--fuse on`` equals ``--fuse off``'s in every column but the seconds,
    over 3 epochs, the diverged copy dropped after the second. With the copies on views of
    stacked weights it did not (val_ece here): AdamW's fused CPU kernel rounds
    ``exp_avg_sq`` by where an element falls in its loops, and the head's one-element bias
    as a row of a 16-copy stack rounded otherwise than alone (first at step 2 at the smoke
    scale; epochs.csv within 9.1e-6). Each copy now has tensors of its own."""
    import pandas as pd

    from losscmp.config import MAX_FUSED_LOSSES

    losses = f"{FULL_GROUP},{exploding_loss}"
    assert len(losses.split(",")) == MAX_FUSED_LOSSES
    args = ["--config", SMOKE, "--dataset", BINARY, "--image-size", "32", "--batch-size", "4"]
    args += ["--epochs", "3", "--threads", "1", "--losses", losses]
    frames = {}
    for fuse in ("on", "off"):
        result = cli("run", *args, "--fuse", fuse, "--out", tmp_path / fuse)
        assert result.exit_code == 0, result.output
        (run_dir,) = (tmp_path / fuse).iterdir()
        frame = pd.read_csv(run_dir / "epochs.csv").drop(columns="seconds")
        frames[fuse] = frame.sort_values(["loss", "epoch"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(frames["on"], frames["off"], check_exact=True)
    statuses = frames["on"].groupby("loss")["status"].agg(list)
    assert statuses[exploding_loss] == ["ok", "diverged"]
    assert statuses["boundary"] == ["ok", "ok", "ok"]
    assert len(frames["on"]) == 15 * 3 + 2


@contextlib.contextmanager
def no_cycle_collector():
    """Python's cycle collector off: what a reference cycle holds stays until it runs."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def test_a_stacked_model_is_freed_as_soon_as_it_is_dropped():
    """No reference cycle through the FusedModel (its vmap over a bound method made one):
    its stacked weights, on a GPU, go back to the allocator when the group ends, not
    whenever the cycle collector next runs, into the next group's time and peak memory."""
    import weakref

    from losscmp.fused import FusedModel
    from losscmp.model import build_model

    settings = tiny_settings(fused_per_copy=False)  # the vmap model, as on CUDA
    with no_cycle_collector():
        fused = FusedModel(build_model(settings.preset, 1, None, seed=0), 3, settings)
        assert not fused.per_copy
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(fused.optimizer, T_max=2)
        stacked = weakref.ref(next(iter(fused.params.values())))
        model = weakref.ref(fused)
        del fused, scheduler
        assert model() is None and stacked() is None
