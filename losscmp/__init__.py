"""losscmp: which segmentation loss should I train with, on my data?

The public API is loaded lazily so that ``import losscmp`` (and so
``losscmp --help``) does not import torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["create_loss", "list_losses", "load_dataset", "list_datasets", "__version__"]

_LAZY = {
    "create_loss": "losscmp.losses",
    "list_losses": "losscmp.losses",
    "load_dataset": "losscmp.data",
    "list_datasets": "losscmp.data",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'losscmp' has no attribute '{name}'")


def __dir__() -> list[str]:
    """The lazy names too, so that a notebook's completion offers them."""
    return sorted({*globals(), *__all__})
