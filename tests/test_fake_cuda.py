"""The CUDA path on a torch without a GPU: fake tensors on device ``cuda``.

``FakeTensorMode`` gives tensors a device, a shape and a dtype but no values, and it may
claim ``cuda`` on a CPU-only machine. Its kernels check devices as CUDA's do: a tensor
made on the host (no ``device=``) that meets one on the GPU raises, 0-d scalars aside, as
on a GPU; and it is stricter than the meta device of tests/test_host_sync.py, which lets
a host index into ``index_select`` or ``scatter_add`` and a host operand into an in-place
op (``on_device += on_host``). With CUDA's autocast switched on
(``gpu_autocast``), the GPU's own autocast rules apply: convolutions in bf16, BatchNorm
keeping bf16, its float32 list. So every loss, the metrics, a training epoch, an
evaluation pass and a fused (vmap) epoch run here as on a GPU, values aside.

What it cannot do, and how the tests stand in:

- no backward: the autograd engine wants a real CUDA device. ``loss.backward()`` gives the
  weights zero gradients instead, so that the optimizer's step (fused AdamW on CUDA) runs;
  the backward itself runs on meta (tests/test_host_sync.py), with the same device checks
  for a mix of host and meta tensors but those above.
- no pinned memory: ``pin_memory`` returns the tensor.
- host work outside the mode: a loss's ``fit`` (Python numbers from the host's class
  counts) and the histogram's edge values are computed before it, as on a GPU they are
  on the host; a fused model is built on the host and its stacked weights then moved (a
  fake tensor cannot be swapped out of a module, which the template's move to meta does).
- no numbers: whether the GPU computes the same values is tests/test_cuda.py's question.
"""

from __future__ import annotations

import contextlib
import json
import shlex

import pytest
import torch
from losses_helpers import (
    IGNORE,
    loss_and_pipeline_target,
    loss_mode_pairs,
    random_logits,
    random_target,
)
from torch._subclasses.fake_tensor import FakeTensorMode
from train_helpers import tiny_settings

import losscmp.train
from losscmp import devices, metrics
from losscmp.data import load_dataset
from losscmp.fused import FusedModel, _Copy, _evaluate_on_device, _train_epoch
from losscmp.model import build_model
from losscmp.plan import Trial, make_loss
from losscmp.spec import parse_spec
from losscmp.train import (
    TrialLog,
    all_finite,
    evaluate_on_device,
    hard_prediction,
    make_optimizer,
    train_one_epoch,
)

# Fake tensors claim CUDA without a driver from some torch after 2.4 (verified on 2.11 and
# 2.14): on 2.4, a host tensor meeting a fake CUDA one initialised the real CUDA runtime
# ("CUDA driver version is insufficient") and pinned memory was not implemented.
pytestmark = pytest.mark.skipif(
    tuple(int(part) for part in torch.__version__.split(".")[:2]) < (2, 11),
    reason=f"fake CUDA tensors need a driver on torch {torch.__version__} (2.11 or later)",
)

GPU = torch.device("cuda")
PAIRS = loss_mode_pairs()
BINARY = "synthetic(fg_fraction=0.2,n_train=4,n_val=4,n_test=4)"  # one batch of four
MULTICLASS = "synthetic(fg_fraction=0.2,n_train=4,n_val=4,n_test=4,num_classes=3)"
# The fake kernels' device check, by its words: torch 2.11 raises a plain RuntimeError
# ("found two different devices"), later ones FakeTensorDeviceMismatchError, a
# RuntimeError that is not importable from 2.11 ("found at least two devices").
DEVICE_MISMATCH = r"found (at least )?two (different )?devices"


@pytest.fixture
def fake_gpu(monkeypatch):
    """The mode to enter (``with fake_gpu:``) once the host's part is done: inside it every
    new tensor is fake, host tensors made before it enter as fake host tensors."""
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *args, **kwargs: self)
    metrics._bin_edge_values()  # host values, cached before any fake tensor exists
    devices._cached_constant.cache_clear()  # no fake constant may outlive its mode
    try:
        yield FakeTensorMode(allow_non_fake_inputs=True)
    finally:
        devices._cached_constant.cache_clear()


@pytest.fixture
def gpu_autocast(monkeypatch):
    """``train._autocast`` as on a GPU with native bf16: torch would switch CUDA autocast
    off, seeing no GPU, and ask the missing GPU whether it has bf16."""
    monkeypatch.setattr(torch.cuda.amp.common, "amp_definitely_not_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(losscmp.devices, "native_bf16", lambda device: True)


def gpu_settings():
    return tiny_settings(GPU, amp=True)


@contextlib.contextmanager
def backward_gives_zero_gradients(monkeypatch, weights):
    """``backward`` on fake CUDA tensors needs a GPU: ``weights`` get zero gradients."""

    def zero_gradients(self, *args, **kwargs):
        for weight in weights():
            weight.grad = torch.zeros_like(weight)

    with monkeypatch.context() as patched:
        patched.setattr(torch.Tensor, "backward", zero_gradients)
        yield


def on_gpu(tensor: torch.Tensor) -> torch.Tensor:
    return devices.to_device(tensor, GPU)


def all_on_gpu(*tensors: torch.Tensor) -> bool:
    return all(tensor.device.type == "cuda" for tensor in tensors)


def test_the_fake_gpu_refuses_host_tensors_as_a_gpu_does(fake_gpu):
    """Not vacuous: a host tensor meeting a GPU one raises, also as an index or in place
    (which the meta device lets through); a 0-d host scalar is fine, as on a GPU."""
    with fake_gpu:
        values = torch.ones(4, device=GPU)
        host_index = torch.tensor([0, 2])
        assert all_on_gpu(values, torch.empty(2, device="cuda"))
        for mix in (
            lambda: values + torch.ones(4),
            lambda: values.index_select(0, host_index),
            lambda: values.scatter_add(0, host_index, values[:2]),
            lambda: values.add_(torch.ones(4)),
        ):
            with pytest.raises(RuntimeError, match=DEVICE_MISMATCH):
                mix()
        assert all_on_gpu(values * torch.tensor(2.0))


def test_the_meta_device_lets_some_host_tensors_through():
    """Why the fake GPU: meta takes a host index, and a host operand in place."""
    on_meta = torch.ones(4, device="meta")
    assert on_meta.index_select(0, torch.tensor([0, 2])).device.type == "meta"
    assert on_meta.add_(torch.ones(4)).device.type == "meta"


@pytest.mark.parametrize("ignore_index", [None, IGNORE])
@pytest.mark.parametrize(("name", "mode"), PAIRS, ids=[f"{n}-{m}" for n, m in PAIRS])
def test_every_loss_keeps_to_the_gpu(name, mode, ignore_index, fake_gpu):
    """A loss's forward with its target and maps as the data pipeline gives them (made on
    the host, sent with ``to_device``): nothing of the host meets the GPU's tensors."""
    loss, target, maps = loss_and_pipeline_target(name, mode, ignore_index)
    with fake_gpu:
        logits = on_gpu(random_logits(mode)).requires_grad_(True)
        maps = {key: on_gpu(value) for key, value in maps.items()}
        value = loss.to(GPU)(logits, on_gpu(target), **maps)
    assert all_on_gpu(value) and value.shape == () and value.dtype == torch.float32


@pytest.mark.parametrize("ignore_index", [None, IGNORE])
@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_metrics_of_a_pass_keep_to_the_gpu(mode, ignore_index, dtype, fake_gpu):
    """What an evaluation pass computes on the device: counts, scores, the histogram (one
    model's and the fused copies'), the finiteness check and the hard predictions, all on
    the GPU; bf16 logits (a model's output under autocast) give the same dtypes."""
    target = random_target(mode)
    if ignore_index is not None:
        target[..., :3] = ignore_index
    logits = random_logits(mode).to(dtype)
    with fake_gpu:
        logits, target = on_gpu(logits), on_gpu(target)
        counts = metrics.confusion_counts(logits, target, mode=mode, ignore_index=ignore_index)
        assert all_on_gpu(counts) and counts.dtype == torch.int64
        assert all_on_gpu(*metrics.scores(counts).values())
        assert all_on_gpu(all_finite(logits), hard_prediction(logits, mode))
        copies = torch.stack([logits, logits])
        assert all_on_gpu(all_finite(copies.flatten(1), dim=1))
        if mode == "binary":
            one = metrics.probability_histogram(logits, target, ignore_index=ignore_index)
            both = metrics.grouped_probability_histogram(copies, target, ignore_index=ignore_index)
            assert all_on_gpu(one, both)
            assert one.dtype == both.dtype == torch.float64
            assert both.shape == (2, metrics.HISTOGRAM_BINS, 3)


def test_a_batch_reaches_the_gpu_through_pinned_memory(fake_gpu, monkeypatch):
    """A copy from pageable host memory makes the host wait for every kernel queued before
    it, ``non_blocking`` or not: a sync per training step that neither the meta device nor
    the fake GPU would show. So each host tensor of a batch (uint8 images, target, each map
    the loss needs) is pinned once and sent with ``non_blocking``; a pinned one as it is."""
    pinned, sent = [], []
    send = torch.Tensor.to

    def pin(tensor, *args, **kwargs):
        pinned.append(tuple(tensor.shape))
        return tensor

    def to(tensor, *args, **kwargs):
        if torch.device(args[0] if args else kwargs["device"]).type == "cuda":
            sent.append((tuple(tensor.shape), kwargs.get("non_blocking", False)))
        return send(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "pin_memory", pin)
    monkeypatch.setattr(torch.Tensor, "to", to)
    batch = {
        "image": torch.zeros(2, 8, 8, 3, dtype=torch.uint8),
        "target": torch.zeros(2, 1, 8, 8),
        "distance": torch.zeros(2, 1, 8, 9),
        "unused": torch.zeros(2, 1, 8, 10),
    }
    with fake_gpu:
        images, target, maps = losscmp.train.batch_on_device(
            batch, GPU, torch.channels_last, ("distance",)
        )
    assert all_on_gpu(images, target, *maps.values()) and list(maps) == ["distance"]
    assert images.is_contiguous(memory_format=torch.channels_last)
    shapes = [(2, 8, 8, 3), (2, 1, 8, 9), (2, 1, 8, 8)]  # images, the map, the target
    assert pinned == shapes
    assert sent == [(shape, True) for shape in shapes]
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda tensor, *args: True)
    pinned.clear()
    with fake_gpu:
        devices.to_device(batch["target"], GPU)
    assert pinned == []


def fitted_losses(data, names) -> dict:
    """Each loss fitted on the host, as ``train_trial`` fits it."""
    counts = torch.as_tensor(data.class_pixel_counts("train"), dtype=torch.float64)
    losses = {}
    for name in names:
        losses[name] = make_loss(parse_spec(name), data)
        losses[name].fit(counts)
    return losses


def recording_input_dtypes(module: torch.nn.Module, seen: set) -> torch.nn.Module:
    module.register_forward_pre_hook(lambda _, args: seen.add(args[0].dtype))
    return module


def names_of(data) -> list[str]:
    return [name for name, mode in PAIRS if mode == data.mode]


@pytest.mark.parametrize("spec", [BINARY, MULTICLASS], ids=["binary", "multiclass"])
def test_a_training_epoch_of_every_loss_and_an_evaluation_keep_to_the_gpu(
    spec, fake_gpu, gpu_autocast, monkeypatch
):
    """``train_one_epoch`` of each loss (its maps from the loader, uint8 images normalised
    on the GPU, channels_last, bf16 autocast by the GPU's rules, fused AdamW) and an
    evaluation pass keeping predictions: everything on the GPU; the model answers in bf16
    and the loss is given float32."""
    data = load_dataset(spec, image_size=32, seed=0)
    settings = gpu_settings()
    model_output, loss_input = set(), set()
    model = build_model(settings.preset, data.out_channels, None, seed=0)
    model.register_forward_hook(lambda _, args, out: model_output.add(out.dtype))
    with fake_gpu:  # one model for every loss: fake weights have no values to spoil
        model = model.to(GPU, memory_format=torch.channels_last)
        optimizer = make_optimizer(model.parameters(), settings)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=2)
    assert optimizer.defaults["fused"] is True
    for name, loss_fn in fitted_losses(data, names_of(data)).items():
        with fake_gpu, backward_gives_zero_gradients(monkeypatch, model.parameters):
            loss_fn = recording_input_dtypes(loss_fn.to(GPU), loss_input)
            total = train_one_epoch(
                model, loss_fn, optimizer, scheduler, data, settings, 0, 1, None
            )
        assert all_on_gpu(total) and total.shape == (), name
    assert model_output == {torch.bfloat16} and loss_input == {torch.float32}
    with fake_gpu:
        found = evaluate_on_device(model, data, settings, "val", keep_predictions=True)
    assert all_on_gpu(found.counts, found.predictions, found.finite)
    assert (found.histogram is None) == (data.mode == "multiclass")
    assert found.histogram is None or all_on_gpu(found.histogram)


def on_the_gpu(fused: FusedModel, settings) -> FusedModel:
    """A FusedModel built on the host, its stacked weights and statistics moved to the GPU
    (and its optimizer made for them)."""
    fused.params = {
        name: weight.detach().to(GPU).requires_grad_() for name, weight in fused.params.items()
    }
    fused.buffers = {name: buffer.to(GPU) for name, buffer in fused.buffers.items()}
    fused.optimizer = make_optimizer(fused.params.values(), settings)
    return fused


@pytest.mark.parametrize("spec", [BINARY, MULTICLASS], ids=["binary", "multiclass"])
def test_a_fused_epoch_of_every_loss_keeps_to_the_gpu(spec, fake_gpu, gpu_autocast, monkeypatch):
    """Every loss as one fused model, as on a GPU (vmap over the stacked weights, bf16
    autocast by the GPU's rules), an evaluation pass, two copies dropped (their weights,
    statistics and AdamW moments sliced on the device) and another epoch."""
    data = load_dataset(spec, image_size=32, seed=0)
    settings = gpu_settings()
    names = names_of(data)
    host_fused = FusedModel(
        build_model(settings.preset, data.out_channels, None, 0), len(names), settings
    )
    assert not host_fused.per_copy
    loss_input = set()
    losses = fitted_losses(data, names)
    with fake_gpu, backward_gives_zero_gradients(monkeypatch, lambda: fused.params.values()):
        fused = on_the_gpu(host_fused, settings)
        copies = []
        for name, loss_fn in losses.items():
            trial = Trial(data.spec, name, 0)
            loss_fn = recording_input_dtypes(loss_fn.to(GPU), loss_input)
            copies.append(_Copy(trial, loss_fn, TrialLog(trial, data, 2)))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(fused.optimizer, T_max=2)
        totals = _train_epoch(fused, copies, scheduler, data, settings, 1, None)
        assert all_on_gpu(totals) and totals.shape == (len(names),)
        found = _evaluate_on_device(fused, data, settings, "test", keep_predictions=True)
        assert all_on_gpu(found.counts, found.predictions, found.finite)
        assert found.counts.shape[:2] == (len(names), 4)
        fused.keep(list(range(2, len(names))))
        totals = _train_epoch(fused, copies[2:], scheduler, data, settings, 2, None)
    assert all_on_gpu(totals) and totals.shape == (len(names) - 2,)
    assert loss_input == {torch.float32}


def test_a_job_on_a_gpu_is_set_up_and_measured_on_that_gpu(monkeypatch):
    """``run_job``'s CUDA-only bookkeeping, which no test without a GPU ran: the worker's
    GPU made current first, cuDNN's autotuning on for the job and restored after, that
    GPU's peak memory reset before the job, read after it and shared out among a fused
    group's trials."""
    import losscmp.fused
    from losscmp import worker
    from losscmp.executors.base import Job, JobContext
    from losscmp.train import TrialOutcome

    calls = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("current", index)))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: calls.append(("reset", d)))

    def peak(device):
        calls.append(("read", device))
        return 300 * 2**20

    def group(trials, *args, **kwargs):
        calls.append(("train", torch.backends.cudnn.benchmark))
        return [TrialOutcome({"trial_id": trial.id}) for trial in trials]

    monkeypatch.setattr(torch.cuda, "max_memory_allocated", peak)
    monkeypatch.setattr(losscmp.fused, "train_fused_group", group)
    monkeypatch.setattr(worker, "job_dataset", lambda label, context: None)
    trials = (Trial("synthetic", "dice", 0), Trial("synthetic", "bce", 0))
    context = JobContext(None, {}, {}, tiny_settings(), threads=1)
    gpu = torch.device("cuda", 1)
    autotuning = torch.backends.cudnn.benchmark
    outcomes = worker.run_job(Job(trials, fused=True), context, lambda event: None, device=gpu)
    assert calls == [("current", 1), ("reset", gpu), ("train", True), ("read", gpu)]
    assert [outcome.record["gpu_peak_mib"] for outcome in outcomes] == [150.0, 150.0]
    assert torch.backends.cudnn.benchmark == autotuning


# ------------------------------------------------------------- a GPU that errs
# What torch raises for CUDA's "sticky" errors (torch.AcceleratorError since 2.8, a
# RuntimeError before), from the first call that sees one; after it, every CUDA call of
# the process raises it again.
DEVICE_SIDE_ASSERT = (
    "CUDA error: device-side assert triggered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, so the "
    "stacktrace below might be incorrect.\n"
    "For debugging consider passing CUDA_LAUNCH_BLOCKING=1"
)
CUBLAS_OUT_OF_MEMORY = "CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"


class StickyGpu:
    """``torch.cuda.synchronize`` as a GPU answers it: fine until ``fail`` has been
    called, then raising that error for good, as CUDA does after a sticky error."""

    def __init__(self, monkeypatch) -> None:
        self.error: Exception | None = None
        monkeypatch.setattr(torch.cuda, "synchronize", self.synchronize)

    def fail(self, error: Exception) -> Exception:
        self.error = error
        return error

    def synchronize(self, device=None) -> None:
        if self.error is not None:
            raise self.error


def test_the_gpu_is_in_an_error_state_after_a_sticky_error_not_after_running_out_of_memory(
    monkeypatch,
):
    """``cuda_error_state`` asks the GPU (a synchronize): a device-side assert answers
    again, as CUDA answers every later call; running out of memory (torch's, cuBLAS's)
    leaves a GPU that works, and so does an error of the host's; a CPU is never asked."""
    gpu = StickyGpu(monkeypatch)
    assert devices.cuda_error_state(GPU) is None
    gpu.fail(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert devices.cuda_error_state(GPU) is None
    gpu.fail(RuntimeError(CUBLAS_OUT_OF_MEMORY))
    assert devices.cuda_error_state(GPU) is None
    gpu.fail(torch.AcceleratorError(DEVICE_SIDE_ASSERT))
    assert devices.cuda_error_state(GPU) == "CUDA error: device-side assert triggered"
    assert devices.cuda_error_state(torch.device("cpu")) is None


QUICK_RUN = ["--losses", "dice,bce", "--dataset", "synthetic(fg_fraction=0.1,n_train=16,n_val=8)"]
QUICK_RUN += ["--epochs", "1", "--seeds", "2", "--model", "tiny", "--device", "cpu"]


def fail_jobs(monkeypatch, failures: dict[int, list]) -> tuple[dict, list]:
    """``run_job`` in this process raising, at the n-th job it is given, the next error of
    ``failures[n]`` (a callable making it) while it has one; the others train. The GPU it
    pretends to train on is asked (``cuda_error_state``) as a real one would be. Returns
    the calls per trial id and the ``StickyGpu``."""
    import losscmp.executors.local as local

    real_run_job = local.run_job
    calls: dict[str, int] = {}
    gpu = StickyGpu(monkeypatch)

    def run_job(job, context, emit, **kwargs):
        (trial,) = job.trials
        number = len(calls) if trial.id not in calls else list(calls).index(trial.id)
        calls[trial.id] = calls.get(trial.id, 0) + 1
        if failures.get(number):
            raise failures[number].pop(0)(gpu)
        return real_run_job(job, context, emit, **kwargs)

    monkeypatch.setattr(local, "run_job", run_job)
    monkeypatch.setattr(local, "cuda_error_state", lambda device: devices.cuda_error_state(GPU))
    return calls, gpu


def test_a_gpu_in_an_error_state_stops_an_in_process_run_at_once(cli, tmp_path, monkeypatch):
    """--jobs 1 (the default on one GPU): a device-side assert leaves this process's CUDA
    context unusable, so every later trial failed (twice each) at its first CUDA call. The
    run now stops at the trial that met it: that one recorded failed with the error (no
    retry: it would fail alike), the finished one kept, the next ones not tried, one line
    saying so with the command that finishes the run (a new process: a new context)."""

    assert_once = [lambda gpu: gpu.fail(torch.AcceleratorError(DEVICE_SIDE_ASSERT))]
    calls, _ = fail_jobs(monkeypatch, {1: assert_once})
    out = tmp_path / "runs"
    in_process = ["--out", str(out), "--jobs", "1", "--threads", "1"]  # in the printed order
    result = cli("run", *QUICK_RUN, *in_process)

    assert result.exit_code == 1, result.output
    (run_dir,) = out.iterdir()
    first, second = list(calls)
    assert calls == {first: 1, second: 1}  # neither retried nor followed by another
    meta = json.loads((run_dir / "run.json").read_text())
    reason = "AcceleratorError: CUDA error: device-side assert triggered"
    assert meta["failed_trials"] == {second: reason}
    assert {path.stem for path in (run_dir / "trials").glob("*.json")} == {first}
    said, command = result.stderr.splitlines()[-1].split(". Finish the run with: ")
    assert said == (
        "losscmp: the GPU is in an error state (CUDA error: device-side assert triggered): "
        "the run stopped, as this process can train nothing more; the trial that met it is "
        f"recorded as failed, finished trials are saved in {run_dir}"
    )
    assert command == shlex.join(
        ["losscmp", "run", *QUICK_RUN, *in_process, "--resume", str(run_dir)]
    )

    monkeypatch.undo()  # a fresh process: the printed command finishes the run
    resumed = cli(*shlex.split(command)[1:])
    assert resumed.exit_code == 0, resumed.output
    assert len(list((run_dir / "trials").glob("*.json"))) == 4
    assert json.loads((run_dir / "run.json").read_text())["failed_trials"] == {}


def test_running_out_of_gpu_memory_in_process_fails_a_trial_and_the_run_goes_on(
    tmp_path, monkeypatch
):
    """Out of memory leaves a GPU that works (torch's OutOfMemoryError, or cuBLAS's status
    in a RuntimeError): the job is retried, then recorded failed as out of memory, and the
    run goes on to the next trials."""
    from losscmp.config import build_config
    from losscmp.events import TrialRetried
    from losscmp.plan import plan_run
    from losscmp.runner import execute, prepare

    def torch_oom(gpu):
        return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def cublas_oom(gpu):
        return RuntimeError(CUBLAS_OUT_OF_MEMORY)

    calls, _ = fail_jobs(monkeypatch, {0: [torch_oom], 1: [cublas_oom, cublas_oom]})
    options = {"losses": "dice,bce", "epochs": 1, "seeds": 2, "model": "tiny", "device": "cpu"}
    dataset = "synthetic(fg_fraction=0.1,n_train=16,n_val=8)"
    plan = plan_run(build_config(**options, dataset=dataset, threads=1, out=str(tmp_path)))
    events = []
    run_dir = execute(prepare(plan), listener=events.append)

    first, second, *rest = list(calls)
    assert calls == {first: 2, second: 2, **{trial: 1 for trial in rest}} and len(rest) == 2
    reason = f"out of memory: {CUBLAS_OUT_OF_MEMORY}"
    retried = [
        (event.trial_id, event.reason) for event in events if isinstance(event, TrialRetried)
    ]
    assert retried == [
        (first, "out of memory: CUDA out of memory. Tried to allocate 2.00 GiB"),
        (second, reason),
    ]
    assert json.loads((run_dir / "run.json").read_text())["failed_trials"] == {second: reason}
    assert len(list((run_dir / "trials").glob("*.json"))) == 3


@pytest.mark.slow  # 15 s: workers spawned, and spawned again after each error
def test_a_worker_whose_gpu_errs_is_replaced_and_its_trial_retried_then_failed(
    tmp_path, monkeypatch
):
    """-j 2: the worker whose job met a device-side assert exits (its GPU context is
    unusable) and a fresh process takes the retry; failing there too, the trial is
    recorded failed, and the run goes on (the GPU stays usable to the other workers)."""
    from worker_faults import cuda_assert_on_bce

    import losscmp.executors.local as local
    from losscmp.config import build_config
    from losscmp.events import TrialRetried
    from losscmp.plan import plan_run
    from losscmp.runner import execute, prepare

    monkeypatch.setattr(local, "_worker_main", cuda_assert_on_bce)
    options = {"losses": "dice,bce", "epochs": 1, "seeds": 1, "model": "tiny", "device": "cpu"}
    dataset = "synthetic(fg_fraction=0.1,n_train=16,n_val=8)"
    config = build_config(**options, dataset=dataset, threads=1, jobs=2, out=str(tmp_path))
    plan = plan_run(config)
    events = []
    run_dir = execute(prepare(plan), listener=events.append)

    dice, bce = (trial.id for trial in plan.trials)
    (retried,) = [event for event in events if isinstance(event, TrialRetried)]
    (failed,) = json.loads((run_dir / "run.json").read_text())["failed_trials"].items()
    assert retried.trial_id == failed[0] == bce
    said = "RuntimeError: CUDA error: device-side assert triggered (pid "
    assert retried.reason.startswith(said) and failed[1].startswith(said)
    assert retried.reason != failed[1]  # another process's pid: the worker was replaced
    assert {path.stem for path in (run_dir / "trials").glob("*.json")} == {dice}


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine whose visible GPUs are ``names`` (a list to fill in), GPU 0 current."""
    names: list[str] = []
    monkeypatch.setattr(devices, "cuda_device_count", lambda: len(names))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: names[index])
    return names


def test_run_json_names_the_gpus_the_jobs_train_on_each_where_they_differ(two_gpus):
    """run.json recorded GPU 0's name alone: on a machine with an A100 and an RTX 3090, a
    run whose workers trained on both claimed A100s (and --resume compared that). GPUs of
    one kind still read as one name, as a single GPU's always did."""
    from losscmp.executors.base import Execution
    from losscmp.executors.local import LocalExecutor

    two_gpus += ["NVIDIA H100 80GB HBM3"]
    assert devices.describe_device(GPU) == "cuda: NVIDIA H100 80GB HBM3"
    two_gpus[:] = ["NVIDIA A100-SXM4-40GB", "NVIDIA GeForce RTX 3090"]
    executor = LocalExecutor(None)
    executor.execution = Execution(jobs=4)  # four workers, two on each GPU
    both = "cuda: NVIDIA A100-SXM4-40GB (cuda:0), NVIDIA GeForce RTX 3090 (cuda:1)"
    assert executor.describe_device(GPU) == devices.describe_device(GPU) == both
    executor.execution = Execution(jobs=1)  # in this process: on the current GPU alone
    assert executor.describe_device(GPU) == "cuda: NVIDIA A100-SXM4-40GB"
    assert devices.describe_device(torch.device("cuda", 1)) == "cuda: NVIDIA GeForce RTX 3090"
    two_gpus[:] = ["NVIDIA A100-SXM4-40GB"] * 2
    executor.execution = Execution(jobs=2)
    assert executor.describe_device(GPU) == "cuda: NVIDIA A100-SXM4-40GB"


def test_a_run_resumed_on_other_gpus_is_told_it_rounds_otherwise(two_gpus):
    """--resume compares the recorded GPUs with those it trains on: a run started on both
    kinds and resumed in this process (on the A100 alone) is told; on the same pair, not."""
    from types import SimpleNamespace

    from losscmp.executors.base import Execution
    from losscmp.executors.local import LocalExecutor
    from losscmp.runner import device_change

    two_gpus += ["NVIDIA A100-SXM4-40GB", "NVIDIA GeForce RTX 3090"]
    executor = LocalExecutor(None)
    executor.execution = Execution(jobs=2)
    prepared = SimpleNamespace(executor=executor, settings=SimpleNamespace(device=GPU))
    meta = {"device": executor.describe_device(GPU)}
    assert device_change(meta, prepared) == ""
    executor.execution = Execution(jobs=1)
    assert device_change(meta, prepared).startswith(
        f"this run started on {meta['device']} and continues on cuda: NVIDIA A100-SXM4-40GB:"
    )
