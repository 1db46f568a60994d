"""``OutputSavingPReLU`` / ``use_output_saving_prelu`` against ``nn.PReLU`` (the independent reference): outputs
and gradients (per-channel and single slopes, both layouts, non-finite inputs), what the backward keeps, the
fallbacks (a slope <= 0, no gradients, ``torch.compile``), and the swap keeping shared modules shared."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cycleisp_fast.nn.prelu import OutputSavingPReLU, use_output_saving_prelu


def _pair(num_parameters: int, low: float = 0.05, high: float = 0.5):
    torch.manual_seed(0)
    act = nn.PReLU(num_parameters)
    with torch.no_grad():
        act.weight.uniform_(low, high)
    return act, OutputSavingPReLU.from_prelu(act)


def _gradients(module, x, grad):
    x = x.detach().requires_grad_()
    out = module(x)
    return (out, *torch.autograd.grad(out, (x, module.weight), grad))


@pytest.mark.parametrize("num_parameters", [1, 16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_outputs_and_gradients_match_nn_prelu(num_parameters, channels_last):
    act, lean = _pair(num_parameters)
    x, grad = torch.randn(2, 16, 7, 9), torch.randn(2, 16, 7, 9)
    if channels_last:
        x, grad = (t.contiguous(memory_format=torch.channels_last) for t in (x, grad))
    for actual, expected in zip(_gradients(lean, x, grad), _gradients(act, x, grad)):
        # x rebuilt as y / a is within an ulp of x: the slope gradient, a sum of g * x, to float rounding
        torch.testing.assert_close(actual, expected, rtol=2e-6, atol=1e-5)


def test_non_finite_inputs_give_what_nn_prelu_gives():
    act, lean = _pair(4)
    x = torch.randn(1, 4, 3, 3)
    x[0, 0, 0, 0], x[0, 1, 1, 1], x[0, 2, 2, 2] = float("nan"), float("inf"), -float("inf")
    grad = torch.randn(1, 4, 3, 3)
    for actual, expected in zip(_gradients(lean, x, grad), _gradients(act, x, grad)):
        torch.testing.assert_close(actual, expected, equal_nan=True)


def test_the_backward_keeps_the_output_not_the_input():
    _, lean = _pair(8)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    y = lean(x)
    saved = [t.untyped_storage().data_ptr() for t in y.grad_fn.saved_tensors]
    assert y.untyped_storage().data_ptr() in saved and x.untyped_storage().data_ptr() not in saved


def test_a_slope_at_or_below_zero_falls_back_to_nn_prelu():
    act, lean = _pair(8)
    with torch.no_grad():
        act.weight[3] = -0.2
        act.weight[5] = 0.0
    x, grad = torch.randn(2, 8, 5, 5), torch.randn(2, 8, 5, 5)
    out, *grads = _gradients(lean, x, grad)
    assert type(lean(x.requires_grad_()).grad_fn).__name__ != "_PReLUFromOutputBackward"
    for actual, expected in zip((out, *grads), _gradients(act, x, grad)):
        torch.testing.assert_close(actual, expected, rtol=0, atol=0)


def test_autocast_and_other_dtypes_run_f_prelu():
    act, lean = _pair(8)
    x = torch.randn(2, 8, 5, 5, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lean(x.bfloat16())
    assert type(out.grad_fn).__name__ != "_PReLUFromOutputBackward"
    out.float().sum().backward()  # mixed dtypes: torch's own backward
    assert x.grad is not None and x.grad.dtype == torch.float32


def test_no_gradients_and_compile_run_f_prelu():
    act, lean = _pair(8)
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(lean(x), act(x), rtol=0, atol=0)
    compiled = torch.compile(lean, backend="aot_eager", fullgraph=True)
    x.requires_grad_()
    out = compiled(x)
    out.sum().backward()
    expected_x = x.detach().requires_grad_()
    act(expected_x).sum().backward()
    torch.testing.assert_close(x.grad, expected_x.grad, rtol=0, atol=0)


def test_the_swap_keeps_shared_modules_shared_and_the_keys():
    act = nn.PReLU(4)
    model = nn.Sequential(nn.Conv2d(4, 4, 3), act, nn.Sequential(nn.Conv2d(4, 4, 3), act), nn.PReLU(), act)
    keys = list(model.state_dict())
    assert use_output_saving_prelu(model) == 2
    assert model[1] is model[2][1] is model[4] and isinstance(model[1], OutputSavingPReLU)
    assert model[1].weight is act.weight
    assert isinstance(model[3], OutputSavingPReLU) and list(model.state_dict()) == keys
    with pytest.raises(TypeError, match="from_prelu takes an nn.PReLU"):
        OutputSavingPReLU.from_prelu(nn.ReLU())
