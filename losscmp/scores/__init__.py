"""The formulas of the scores of the hard prediction: each a function of the confusion
counts ``(tp, fp, fn, tn)``, float tensors of one shape (shares of the pixel total: MCC's
product of four counts stays in range), returning the score elementwise.

One module per family (overlap, correlation, retrieval); a new score is a function in a
module here and its ``register_score`` line in ``losscmp/metric_names.py``, which
``metrics.scores`` reads. Zero denominators: :func:`ratio` with the score's empty value,
its convention in the function's docstring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def ratio(numerator: torch.Tensor, denominator: torch.Tensor, empty) -> torch.Tensor:
    """``numerator / denominator``, and ``empty`` (a number or a tensor) where the
    denominator is 0."""
    import torch

    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, numerator / safe, empty)


def agrees(fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """1.0 where the prediction makes no error (fp == fn == 0), else 0.0."""
    return ((fp == 0) & (fn == 0)).to(fp.dtype)
