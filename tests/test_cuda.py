"""The CUDA path: every loss, a trial, a fused group and whole runs on a GPU.

Skipped (with the reason) where torch sees no CUDA device, which is CI's case; run on
a GPU machine with ``python -m pytest -m cuda``. The tolerances, stated beside each
assertion, are for bf16 autocast in the model and float32 losses; those of bf16 training
were estimated on the CPU with the GPU's autocast rules (``cuda_style_bf16_on_cpu``), not
yet on a GPU (no session that built this had one).
"""

from __future__ import annotations

import contextlib
import json
import math
from types import SimpleNamespace

import pytest
import torch
from losses_helpers import IGNORE, loss_mode_pairs, random_logits, random_target
from train_helpers import one_step_fused_and_alone, tiny_settings

from losscmp.data import load_dataset
from losscmp.fused import FusedModel, _Copy, _evaluate_on_device, _train_epoch, train_fused_group
from losscmp.losses import LOSS_REGISTRY, create_loss
from losscmp.losses.distance import batch_target_maps
from losscmp.model import build_model
from losscmp.plan import Trial, make_loss
from losscmp.spec import parse_spec
from losscmp.train import (
    TrialLog,
    evaluate_on_device,
    make_optimizer,
    train_one_epoch,
    train_trial,
    training_loader,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]

PAIRS = loss_mode_pairs()
BINARY = "synthetic(fg_fraction=0.2,n_train=32,n_val=16)"
MULTICLASS = "synthetic(fg_fraction=0.2,n_train=32,n_val=16,num_classes=3)"


def settings(device: str, epochs: int = 2, amp: bool = True):
    return tiny_settings(device, epochs=epochs, batch_size=8, lr=3e-3, amp=amp)


@pytest.fixture(scope="module", params=[BINARY, MULTICLASS], ids=["binary", "multiclass"])
def data(request):
    return load_dataset(request.param, image_size=64, seed=0)


def first_batch(data, loss_fn) -> dict:
    loader = training_loader(data, settings("cpu"), SimpleNamespace(needs=loss_fn.needs), 0, 1)
    return next(iter(loader))


def loss_and_gradient(loss_fn, logits, batch, device):
    logits = logits.detach().to(device).requires_grad_(True)
    maps = {name: batch[name].to(device) for name in loss_fn.needs}
    value = loss_fn.to(device)(logits, batch["target"].to(device), **maps)
    value.backward()
    return value.item(), logits.grad.cpu()


@pytest.mark.parametrize("name", LOSS_REGISTRY.names())
def test_every_loss_on_cuda_equals_cpu(name, data):
    """Same logits and batch on both devices: value within 1e-4 relative, gradient within
    1e-4 of its largest entry (float32 reductions in another order)."""
    if data.mode not in LOSS_REGISTRY.get(name).modes:
        pytest.skip(f"{name} has no {data.mode} mode")
    spec = parse_spec(name)
    cpu_loss = make_loss(spec, data)
    batch = first_batch(data, cpu_loss)
    shape = (batch["image"].shape[0], data.out_channels, *batch["image"].shape[2:])
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 3
    cpu_loss.fit(torch.as_tensor(data.class_pixel_counts("train"), dtype=torch.float64))
    cpu_value, cpu_grad = loss_and_gradient(cpu_loss, logits, batch, "cpu")
    gpu_loss = make_loss(spec, data)
    gpu_loss.fit(torch.as_tensor(data.class_pixel_counts("train"), dtype=torch.float64))
    gpu_value, gpu_grad = loss_and_gradient(gpu_loss, logits, batch, "cuda")
    assert math.isfinite(gpu_value)
    assert gpu_value == pytest.approx(cpu_value, rel=1e-4, abs=1e-6)
    scale = cpu_grad.abs().max().item()
    assert (gpu_grad - cpu_grad).abs().max().item() <= 1e-4 * scale + 1e-9


@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=[f"{n}-{m}" for n, m in PAIRS])
def test_every_loss_with_ignored_pixels_on_cuda_equals_cpu(name, mode):
    """As above, with a band of ignored pixels: where a valid mask exists the GPU takes
    its own branches (top-k's count kept on the device, Lovász's sort of every error),
    which the CPU's shortcuts skip; checked on the GPU on values only here (their devices
    and dtypes on a fake GPU: tests/test_fake_cuda.py). Same tolerances."""
    target = random_target(mode, size=32)
    target[..., :5] = IGNORE
    logits = 3 * random_logits(mode, size=32, seed=1)
    found = {}
    for device in ("cpu", "cuda"):
        loss_fn = create_loss(name, mode=mode, ignore_index=IGNORE)
        classes = 1 if mode == "binary" else logits.shape[1]
        maps = batch_target_maps(
            target, mode=mode, num_classes=max(2, classes), ignore_index=IGNORE, names=loss_fn.needs
        )
        found[device] = loss_and_gradient(loss_fn, logits, {"target": target, **maps}, device)
    (cpu_value, cpu_grad), (gpu_value, gpu_grad) = found["cpu"], found["cuda"]
    assert math.isfinite(gpu_value)
    assert gpu_value == pytest.approx(cpu_value, rel=1e-4, abs=1e-6)
    scale = cpu_grad.abs().max().item()
    assert (gpu_grad - cpu_grad).abs().max().item() <= 1e-4 * scale + 1e-9


def test_trial_on_cuda_learns_like_the_cpu(data):
    """Two epochs under bf16 autocast train as float32 on the CPU does, to bf16's precision:
    finite losses, train loss within 5 % and validation Dice within 0.15 of the CPU's.
    Estimated on the CPU with the GPU's autocast rules (``cuda_style_bf16_on_cpu``, this
    configuration, seeds 0-3): at most 1.7 % and 0.087; a few flipped pixels of 16 small
    validation images move their Dice that much."""
    trial = Trial(data.spec, "dice", 0)
    spec = parse_spec("dice")
    gpu = train_trial(trial, spec, data, settings("cuda")).record
    cpu = train_trial(trial, spec, data, settings("cpu", amp=False)).record
    assert gpu["status"] == "finished"
    for row, expected in zip(gpu["epochs"], cpu["epochs"], strict=True):
        assert math.isfinite(row["train_loss"])
        assert row["train_loss"] == pytest.approx(expected["train_loss"], rel=0.05)
        assert abs(row["val_dice"] - expected["val_dice"]) < 0.15


def test_a_fused_step_on_cuda_matches_separate_steps():
    """One bf16 step of three stacked copies against each copy stepped alone: losses
    within 1e-3 relative and BatchNorm running statistics within 1e-2, as the CPU test
    with the GPU's autocast rules (tests/test_fused.py, the same losses) measured 6.1e-5
    and 2.1e-3."""
    spec = "synthetic(fg_fraction=0.2,n_train=4,n_val=4,n_test=4)"
    one_batch = load_dataset(spec, image_size=32, seed=0)
    setup = tiny_settings("cuda", amp=True)
    losses = ["dice", "bce", "boundary"]
    fused_losses, fused, alone = one_step_fused_and_alone(one_batch, losses, setup)
    for k, (loss, model, _) in enumerate(alone):
        assert fused_losses[k] == pytest.approx(loss, rel=1e-3)
        for name, buffer in model.named_buffers():
            if buffer.is_floating_point():
                assert (fused.buffers[name][k] - buffer).abs().max().item() <= 1e-2, name


def test_fused_group_on_cuda_matches_sequential_on_cuda(data):
    """Fused (vmap, NCHW) against sequential (channels_last) trials on the GPU, 2 epochs:
    train loss within 8 % and validation Dice within 0.15. bf16 rounds the two kernel
    orders differently and training amplifies it: estimated on the CPU with the GPU's
    autocast rules (this configuration, seeds 0-3) at most 3.4 % and 0.081."""
    losses = ["dice", "focal", "ce"] if data.mode == "multiclass" else ["dice", "focal", "bce"]
    specs = {label: parse_spec(label) for label in losses}
    trials = [Trial(data.spec, label, 0) for label in losses]
    fused = train_fused_group(trials, specs, data, settings("cuda"))
    for trial, outcome in zip(trials, fused, strict=True):
        alone = train_trial(trial, specs[trial.loss], data, settings("cuda")).record
        assert outcome.record["status"] == alone["status"] == "finished"
        for row, expected in zip(outcome.record["epochs"], alone["epochs"], strict=True):
            assert row["train_loss"] == pytest.approx(expected["train_loss"], rel=0.08)
            assert abs(row["val_dice"] - expected["val_dice"]) < 0.15, trial.loss


def test_a_diverging_copy_on_cuda_is_sliced_out_and_the_others_train_on(exploding_loss):
    """A copy whose loss turns NaN in epoch 2 is recorded diverged and sliced out of the
    stacked weights, statistics and fused AdamW's moments (its step count a tensor on the
    GPU); the others finish with finite numbers. Their numbers against a group without it
    are compared on the CPU (tests/test_fused.py), where they agree to the last digit."""
    data = load_dataset(BINARY, image_size=64, seed=0)
    losses = ["dice", exploding_loss, "bce"]
    trials = [Trial(data.spec, label, 0) for label in losses]
    specs = {label: parse_spec(label) for label in losses}
    outcomes = train_fused_group(trials, specs, data, settings("cuda", epochs=3))
    diverged = outcomes[1].record
    assert (diverged["status"], diverged["diverged_epoch"]) == ("diverged", 2)
    for outcome in (outcomes[0], outcomes[2]):
        assert outcome.record["status"] == "finished"
        assert [row["epoch"] for row in outcome.record["epochs"]] == [1, 2, 3]
        assert all(math.isfinite(row["train_loss"]) for row in outcome.record["epochs"])


@contextlib.contextmanager
def every_wait_for_the_gpu_raises():
    """Any operation that makes the host wait for the GPU (``.item()``, a blocking copy
    such as ``torch.tensor(..., device="cuda")``, ``nonzero``, boolean indexing) raises."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def fitted_losses(data, names):
    counts = torch.as_tensor(data.class_pixel_counts("train"), dtype=torch.float64)
    losses = {}
    for name in names:
        losses[name] = make_loss(parse_spec(name), data).to("cuda")
        losses[name].fit(counts)
    return losses


def test_training_and_evaluation_never_wait_for_the_gpu(data):
    """Every loss trained alone (channels_last, bf16) and all of them as one fused group,
    and an evaluation pass: after a first epoch and evaluation (which make the per-device
    constants), a whole epoch runs with no host-device sync; the caller's read of the loss
    sum is the epoch's one. tests/test_host_sync.py checks the same on the meta device, in CI."""
    setup = settings("cuda", epochs=2)
    names = [name for name in LOSS_REGISTRY.names() if data.mode in LOSS_REGISTRY.get(name).modes]
    losses = fitted_losses(data, names)
    for name, loss_fn in losses.items():
        model = build_model(setup.preset, data.out_channels, None, seed=0)
        model = model.to("cuda", memory_format=torch.channels_last)
        optimizer = make_optimizer(model.parameters(), setup)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=16)
        train_one_epoch(model, loss_fn, optimizer, schedule, data, setup, 0, 1, None)
        evaluate_on_device(model, data, setup, "val", keep_predictions=True)  # its constants
        with every_wait_for_the_gpu_raises():
            total = train_one_epoch(model, loss_fn, optimizer, schedule, data, setup, 0, 2, None)
            evaluate_on_device(model, data, setup, "val", keep_predictions=True)
        assert math.isfinite(total.item()), name
    model = build_model(setup.preset, data.out_channels, None, seed=0).to("cuda")
    fused = FusedModel(model, len(names), setup)
    copies = [
        _Copy(Trial(data.spec, name, 0), loss, TrialLog(Trial(data.spec, name, 0), data, 2))
        for name, loss in losses.items()
    ]
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(fused.optimizer, T_max=16)
    _train_epoch(fused, copies, schedule, data, setup, 1, None)
    _evaluate_on_device(fused, data, setup, "val", keep_predictions=True)
    with every_wait_for_the_gpu_raises():
        totals = _train_epoch(fused, copies, schedule, data, setup, 2, None)
        _evaluate_on_device(fused, data, setup, "val", keep_predictions=True)
    assert torch.isfinite(totals).all()


@pytest.mark.slow
@pytest.mark.parametrize(
    "execution",
    [
        ["--fuse", "on"],
        ["--fuse", "off", "--jobs", "1"],
        ["--fuse", "off", "--trials-per-gpu", "2"],
        # Loader processes forked (Linux's default) from a process that holds CUDA: they
        # must never touch it (torch's seeding in each skips CUDA in such a child).
        ["--fuse", "on", "--num-workers", "2"],
        # A Ray task trains in a thread of a process that has not used CUDA yet.
        ["--fuse", "on", "--executor", "ray"],
        ["--fuse", "off", "--executor", "ray"],
    ],
    ids=["fused", "sequential", "two-per-gpu", "loader-processes", "ray-fused", "ray"],
)
def test_whole_run_on_cuda(tmp_path, execution):
    from typer.testing import CliRunner

    from losscmp.cli import app

    if "ray" in execution:
        pytest.importorskip("ray")

    args = ["run", "--losses", "dice,focal,boundary", "--dataset", BINARY, "--epochs", "2"]
    args += ["--model", "tiny", "--image-size", "64", "--device", "cuda", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, [*args, *execution])
    assert result.exit_code == 0, result.output
    (run_dir,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["execution"]["fused"] is (execution[execution.index("--fuse") + 1] == "on")
    records = [json.loads(path.read_text()) for path in (run_dir / "trials").glob("*.json")]
    assert sorted(record["loss"] for record in records) == ["boundary", "dice", "focal"]
    for record in records:
        assert record["status"] == "finished"
        assert record["gpu_peak_mib"] > 0


def test_scores_on_cuda_equal_the_cpus():
    """The evaluation's bookkeeping on the GPU: the histogram's bins (guessed from the
    probability, settled against the edges: the GPU's sigmoid rounds its own way), the
    confusion counts (binary and multiclass) and the finiteness check, against their CPU
    definitions. Counts are whole numbers (exact in any order). The probability sums are
    those of the GPU's own sigmoid values, to float64 atomics' rounding: its kernel,
    1 / (1 + exp(-x)), rounds some values one float32 step (6e-8) away from the CPU's
    (that formula on the CPU: 163 of these 4096, sums up to 1.2e-7 off, past any 1e-9)."""
    from test_metrics import SPECIAL_LOGITS, _edges_and_neighbours, _searched_histogram

    from losscmp import metrics
    from losscmp.train import all_finite

    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(4, 1, 32, 32, generator=generator) * 6
    planted = torch.cat([_edges_and_neighbours(), torch.tensor(SPECIAL_LOGITS[1:])])
    logits.view(-1)[: len(planted)] = planted
    target = (torch.rand(4, 1, 32, 32, generator=generator) > 0.7).float()
    target[:, :, :3] = 255
    for ignore_index in (None, 255):
        gpu_sigmoid = torch.sigmoid(logits.cuda()).cpu()  # as the histogram computes it
        expected = _searched_histogram(logits, target, ignore_index, gpu_sigmoid)
        found = metrics.probability_histogram(
            logits.cuda(), target.cuda(), ignore_index=ignore_index
        ).cpu()
        assert torch.equal(found[:, :2], expected[:, :2])
        torch.testing.assert_close(found[:, 2], expected[:, 2], rtol=1e-12, atol=1e-9)
        on_cpu = metrics.confusion_counts(logits, target, mode="binary", ignore_index=ignore_index)
        on_gpu = metrics.confusion_counts(
            logits.cuda(), target.cuda(), mode="binary", ignore_index=ignore_index
        )
        assert torch.equal(on_gpu.cpu(), on_cpu)
    scores = torch.randn(4, 3, 32, 32, generator=generator)
    labels = torch.randint(0, 3, (4, 32, 32), generator=generator)
    for ignore_index in (None, 255):
        if ignore_index is not None:
            labels[:, :3] = ignore_index
        on_cpu = metrics.confusion_counts(
            scores, labels, mode="multiclass", ignore_index=ignore_index
        )
        on_gpu = metrics.confusion_counts(
            scores.cuda(), labels.cuda(), mode="multiclass", ignore_index=ignore_index
        )
        assert torch.equal(on_gpu.cpu(), on_cpu)
    for values in (logits, torch.tensor([1.0, math.nan]), torch.tensor([3e38] * 4)):
        assert all_finite(values.cuda()).item() == torch.isfinite(values).all().item()


def test_running_out_of_gpu_memory_leaves_the_gpu_usable():
    """What test_fake_cuda assumes of a real GPU: an allocation too big is torch's
    OutOfMemoryError, read as such, and the process's CUDA context works on (the run goes
    on, the trial is retried)."""
    from losscmp.devices import cuda_error_state
    from losscmp.executors.base import failure_reason

    gpu = torch.device("cuda")
    with pytest.raises(torch.OutOfMemoryError) as raised:
        torch.empty(2**50, dtype=torch.uint8, device=gpu)  # a petabyte
    assert failure_reason(raised.value).startswith("out of memory: CUDA out of memory.")
    assert cuda_error_state(gpu) is None
    assert torch.ones(3, device=gpu).sum().item() == 3.0


DEVICE_SIDE_ASSERT = """
import torch
from losscmp.devices import cuda_error_state
gpu = torch.device("cuda")
values = torch.zeros(2, device=gpu)
try:
    values[torch.tensor([5], device=gpu)] = 1.0  # out of bounds: a device-side assert
    torch.cuda.synchronize()
except Exception:
    pass
print(cuda_error_state(gpu))
"""


def test_a_device_side_assert_leaves_the_gpu_in_an_error_state():
    """The other half (in a child: the assert ruins its process's CUDA context): every
    later call fails, and cuda_error_state says so, which stops an in-process run."""
    import subprocess
    import sys

    from conftest import REPO

    done = subprocess.run(
        [sys.executable, "-c", DEVICE_SIDE_ASSERT],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,  # where this losscmp is imported from
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("CUDA error: device-side assert triggered"), done.stdout
