"""Which device a run trains on, and how it is described in run.json.

Kept apart from the runner so executors (worker processes, Ray tasks) resolve
and describe devices the same way the main process does.
"""

from __future__ import annotations

import functools
import platform
import re

from losscmp.errors import ParameterError


def available_devices() -> dict[str, bool]:
    import torch

    mps = getattr(torch.backends, "mps", None)
    return {
        "cuda": torch.cuda.is_available(),
        "mps": bool(mps and mps.is_available()),
        "cpu": True,
    }


def resolve_device(name: str):
    """``auto`` takes CUDA, then MPS, then the CPU; an explicit choice must exist."""
    import torch

    available = available_devices()
    if name == "auto":
        name = next(device for device in ("cuda", "mps", "cpu") if available[device])
    if not available.get(name, False):
        raise ParameterError(f"--device {name}: no {name.upper()} device is available here")
    return torch.device(name)


def cuda_device_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def device_for_worker(device_type: str, worker_index: int):
    """Worker ``i`` of a pool trains on GPU ``i mod count`` (round-robin); others share the host."""
    import torch

    if device_type == "cuda":
        return torch.device("cuda", worker_index % max(1, cuda_device_count()))
    return torch.device(device_type)


def make_current(device) -> None:
    """Make a worker's GPU its current CUDA device: what uses the current device (pinned host
    memory, the caching allocator's streams) would otherwise open a second CUDA context, on
    GPU 0, in every worker of another GPU."""
    import torch

    if device.type == "cuda":
        # set_device wants an index: ``cuda`` alone (what --device cuda resolves to, for a
        # run in this process) means the current one, which also initialises CUDA.
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.set_device(index)


@functools.cache
def native_bf16(device) -> bool:
    """Whether a CUDA device computes in bf16 natively: compute capability 8.0 on (A100,
    H100, RTX 30xx...), or a ROCm GPU; per device, asked once (the step asks each time)."""
    import torch

    if torch.version.hip:
        return True
    return torch.cuda.get_device_capability(device) >= (8, 0)


def amp_trains_in_bf16(device) -> bool:
    """Whether --amp trains in bf16 on ``device`` (train.py's autocast; what run notes and
    --resume say of --amp follow it): on a CUDA GPU with native bf16 only, no loss scaling
    needed. Elsewhere float32, older GPUs included (V100, T4: there bf16 is emulated,
    slower than float32)."""
    return device.type == "cuda" and native_bf16(device)


def describe_device(device, gpus: int | None = None) -> str:
    """The device as run.json records it. On CUDA, the GPUs the jobs train on: ``device``'s
    own, or, for ``cuda`` alone, the first ``gpus`` (as ``device_for_worker`` deals them out;
    1: the current one, where jobs run in this process; None: every visible GPU). One name
    where they are alike (``cuda: NVIDIA H100 80GB HBM3``), else each with its index: GPUs
    of another kind round differently, which --resume and the report compare."""
    import torch

    if device.type == "cuda":
        return f"cuda: {describe_gpus(_gpus_trained_on(device, gpus))}"
    if device.type == "cpu":
        # The model and the instruction set torch's kernels use (oneDNN's convolutions and
        # ATen's vectorised loops): a CPU with another one rounds differently, whatever
        # the thread count.
        capability = torch.backends.cpu.get_cpu_capability()
        return f"cpu: {cpu_model()} ({platform.machine()}, {capability})"
    return device.type


def _gpus_trained_on(device, gpus: int | None) -> list[int]:
    import torch

    if device.index is not None:
        return [device.index]
    if gpus == 1:
        return [torch.cuda.current_device()]
    count = cuda_device_count()
    return list(range(count if gpus is None else max(1, min(gpus, count))))


def describe_gpus(indices: list[int]) -> str:
    """``NAME`` where the GPUs ``indices`` are all of one kind, else
    ``NAME_A (cuda:0), NAME_B (cuda:1)``."""
    import torch

    names = [torch.cuda.get_device_name(index) for index in indices]
    if len(set(names)) == 1:
        return names[0]
    return ", ".join(f"{name} (cuda:{index})" for index, name in zip(indices, names, strict=True))


def rounding_key(description: str) -> str | None:
    """What of a device description (run.json's ``device``) decides how a trial rounds:
    not a Ray cluster's GPU count (a cluster that grew trains alike). None where the
    description cannot tell: ``cpu: x86_64``, written before the model and instruction
    set were kept."""
    if re.fullmatch(r"cpu: [^\s(]+", description):
        return None
    return re.sub(r", [\d.]+ GPUs?\b", "", description)


def cpu_model() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ------------------------------------------------- host -> device without waiting
# A copy from pageable host memory to a GPU makes the host wait until every kernel
# queued before it has run (the driver stages the bytes synchronously), whether or not
# ``non_blocking`` is set; so does building a tensor there from Python values. In a
# training step that is a sync per step: the host stops queueing the next step's
# kernels until the GPU is idle. Batches go through pinned memory instead, and fixed
# values (class weights, histogram edges) are made once per device.


def to_device(tensor, device, memory_format=None):
    """A host tensor on ``device``, queued like a kernel: on CUDA it is first copied into
    pinned memory (the caching host allocator reuses the blocks and keeps each alive
    until its copy has run, so the source is never overwritten under the copy)."""
    import torch

    if device.type == "cuda" and tensor.device.type == "cpu" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    memory_format = torch.preserve_format if memory_format is None else memory_format
    return tensor.to(device, non_blocking=True, memory_format=memory_format)


def device_constant(values, device, dtype=None):
    """The tensor of ``values`` (numbers) on ``device``, made on first use and then shared:
    never modify it in place."""
    import torch

    return _cached_constant(tuple(values), torch.device(device), dtype or torch.float32)


@functools.lru_cache(maxsize=512)
def _cached_constant(values: tuple, device, dtype):
    import torch

    return torch.tensor(values, device=device, dtype=dtype)


# ------------------------------------------------------------------ device errors
# Running out of GPU memory is not always torch's OutOfMemoryError: a library that
# allocates for itself (cuDNN's handle and workspaces, cuBLAS's handle) reports it through
# its own status, which torch raises as a RuntimeError ("cuDNN error: ...", "CUDA error:
# CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"). cuDNN 9 splits
# CUDNN_STATUS_ALLOC_FAILED into host and device allocation failures.
OUT_OF_MEMORY_STATUSES = (
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED",
    "CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUSOLVER_STATUS_ALLOC_FAILED",
    "CUDA error: out of memory",  # cudaErrorMemoryAllocation outside the caching allocator
)
# cuDNN's bare "not supported" (its named causes read CUDNN_STATUS_NOT_SUPPORTED_SHAPE and
# so on): what it says when it has no memory for any of its algorithms' workspaces, seen at
# large batches, whatever torch's hint about non-contiguous inputs adds.
PROBABLY_OUT_OF_MEMORY = re.compile(r"CUDNN_STATUS_NOT_SUPPORTED\b")


def out_of_memory(error: BaseException) -> str:
    """Whether ``error`` is running out of memory: "yes", "probably" (cuDNN's bare "not
    supported") or "" (no)."""
    if type(error).__name__ == "OutOfMemoryError" or isinstance(error, MemoryError):
        return "yes"  # torch's (CUDA, MPS); Python's
    text = str(error)
    if any(status in text for status in OUT_OF_MEMORY_STATUSES):
        return "yes"
    return "probably" if PROBABLY_OUT_OF_MEMORY.search(text) else ""


def cuda_error_state(device) -> str | None:
    """Why ``device``'s CUDA context can no longer be used in this process, or None. After
    a "sticky" error (a device-side assert, an illegal memory access) every later CUDA call
    of the process fails with it, a synchronize included; after running out of memory,
    or an error of the host's, the context works on."""
    import torch

    if device.type != "cuda":
        return None
    try:
        torch.cuda.synchronize(device)
    except Exception as error:  # torch.AcceleratorError (a RuntimeError before torch 2.8)
        if out_of_memory(error):
            return None
        lines = str(error).strip().splitlines()
        return lines[0] if lines else type(error).__name__
    return None
