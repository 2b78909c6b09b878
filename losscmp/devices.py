"""Which device a run trains on, and how it is described in run.json.

Kept apart from the runner so executors (worker processes, Ray tasks) resolve
and describe devices the same way the main process does.
"""

from __future__ import annotations

import platform

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


def describe_device(device) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"cpu: {platform.processor() or platform.machine()}"
    return device.type
