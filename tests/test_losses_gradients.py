"""The hand-written backward passes agree with autograd's numerical gradients."""

from __future__ import annotations

import pytest
import torch

from losscmp.losses.compound import log_one_minus_softmax
from losscmp.losses.functional import (
    sigmoid_focal_sum,
    sigmoid_focal_sum_and_counts,
    soft_counts_from_logits,
    softplus,
)


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("dims", [(0, 2, 3), (2, 3)])
@pytest.mark.parametrize("masked", [False, True])
def test_fused_soft_counts_gradient(binary, dims, masked):
    generator = torch.Generator().manual_seed(0)
    channels = 1 if binary else 3
    logits = torch.randn(2, channels, 3, 4, dtype=torch.float64, generator=generator)
    y = (torch.rand(2, channels, 3, 4, generator=generator) > 0.5).double()
    valid = None
    if masked:
        valid = (torch.rand(2, 1, 3, 4, generator=generator) > 0.3).double()
        y = y * valid

    def counts(x):
        tp, fp, fn = soft_counts_from_logits(x, y, valid, binary, dims)
        return tp, fp, fn

    assert torch.autograd.gradcheck(counts, (logits.requires_grad_(True),))


def test_softplus_value_and_gradient():
    logits = torch.tensor([-100.0, -20.0, -1.0, 0.0, 0.5, 20.0, 100.0], dtype=torch.float64)
    torch.testing.assert_close(softplus(logits), torch.nn.functional.softplus(logits))
    assert torch.autograd.gradcheck(softplus, (logits[1:-1].clone().requires_grad_(True),))


def test_log_one_minus_softmax_value_and_gradient():
    logits = torch.randn(2, 4, 3, 3, dtype=torch.float64) * 5
    log_probs = torch.log_softmax(logits, 1)
    torch.testing.assert_close(log_one_minus_softmax(log_probs), torch.log(-torch.expm1(log_probs)))
    assert torch.autograd.gradcheck(
        lambda x: log_one_minus_softmax(torch.log_softmax(x, 1)), (logits.requires_grad_(True),)
    )


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_fused_sigmoid_terms_gradient_and_value(gamma, soft, masked):
    """The one-sigmoid BCE/focal sum and its soft counts: autograd-free backward checked
    numerically, and values against the textbook formula."""
    generator = torch.Generator().manual_seed(1)
    shape = (2, 1, 3, 4)
    logits = torch.randn(shape, dtype=torch.float64, generator=generator) * 3
    y = torch.rand(shape, dtype=torch.float64, generator=generator)
    y = y if soft else (y > 0.5).double()
    valid = (torch.rand(shape, generator=generator) > 0.3).double() if masked else None
    weight = valid

    def terms(x):
        return sigmoid_focal_sum_and_counts(x, y, weight, gamma, valid, (2, 3))

    assert torch.autograd.gradcheck(terms, (logits.clone().requires_grad_(True),))
    p = torch.sigmoid(logits)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    expected = bce * (y - p).abs() ** gamma * (1 if valid is None else valid)
    torch.testing.assert_close(sigmoid_focal_sum(logits, y, weight, gamma), expected.sum())
