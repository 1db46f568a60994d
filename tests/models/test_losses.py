"""CycleISP's losses against values computed by hand, and the joint loss's gradient reaching RGB2RAW through
both terms."""

import math

import pytest
import torch

from cycleisp_fast.models import joint_loss, raw2rgb_loss, rgb2raw_loss


def test_rgb2raw_loss_by_hand():
    predicted = torch.tensor([0.5, 0.0005, 0.2, 1.0])
    target = torch.tensor([0.25, 0.002, 0.2, 0.5])
    l1 = (0.25 + 0.0015 + 0 + 0.5) / 4
    log = (
        abs(math.log(0.5) - math.log(0.25))
        + abs(math.log(1e-3) - math.log(0.002))
        + 0
        + abs(math.log(1.0) - math.log(0.5))
    ) / 4
    assert rgb2raw_loss(predicted, target).item() == pytest.approx(l1 + log, rel=1e-6)


def test_raw2rgb_and_joint_losses():
    predicted, target = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 3.0])
    assert raw2rgb_loss(predicted, target).item() == pytest.approx(0.75)
    raw_pred, raw_target = torch.tensor([0.5]), torch.tensor([0.25])
    expected = 0.3 * rgb2raw_loss(raw_pred, raw_target) + 0.7 * raw2rgb_loss(predicted, target)
    assert joint_loss(raw_pred, raw_target, predicted, target, beta=0.3).item() == pytest.approx(expected.item())


def test_joint_loss_sends_gradients_through_both_terms():
    raw = torch.tensor([0.5, 0.3], requires_grad=True)
    rgb = raw * 2  # a stand-in for RAW2RGB applied to RGB2RAW's output
    for beta in (1.0, 0.0, 0.5):
        (grad,) = torch.autograd.grad(
            joint_loss(raw, torch.zeros(2), rgb, torch.zeros(2), beta=beta), raw, retain_graph=True
        )
        (own,) = torch.autograd.grad(rgb2raw_loss(raw, torch.zeros(2)), raw, retain_graph=True)
        (through,) = torch.autograd.grad(raw2rgb_loss(rgb, torch.zeros(2)), raw, retain_graph=True)
        torch.testing.assert_close(grad, beta * own + (1 - beta) * through)


def test_bad_arguments():
    with pytest.raises(ValueError, match="prediction and target must be tensors of one shape"):
        raw2rgb_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="beta must be in"):
        joint_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), beta=1.5)
    with pytest.raises(ValueError, match="log_eps must be positive"):
        rgb2raw_loss(torch.zeros(1), torch.zeros(1), log_eps=0)
