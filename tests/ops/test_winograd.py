"""Winograd F(4x4, 3x3) convolution (``cycleisp_fast::winograd_conv3x3``, ``WinogradConv2d``, ``use_winograd``)
against ``F.conv2d`` in float64, the independent reference: accuracy within the stated bound over shapes that
exercise the tile edges, partial channel blocks and several bands; layouts; degenerate sizes; non-finite input;
the fake kernel (opcheck, torch.compile); the module's fallbacks and weight tracking; clear errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cycleisp_fast.nn.winograd import MIN_CHANNELS, WinogradConv2d, use_winograd, winograd_applies
from cycleisp_fast.ops import winograd as op

pytestmark = pytest.mark.skipif(not op.available(), reason="needs the compiled extension")

RELATIVE_RMS_BOUND = 3e-6
"""Relative RMS error of the float32 result against the exact convolution (measured 0.5-1.1e-6; direct float32
convolution: 1-4e-7)."""
RELATIVE_MAX_BOUND = 5e-5
"""Largest error relative to the output's RMS (measured up to 1.5e-5)."""


def _case(n, c, k, h, w, *, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    weight = torch.randn(k, c, 3, 3, generator=g) / (3 * max(c, 1) ** 0.5)
    b = torch.randn(k, generator=g) if bias else None
    return x, weight, b


def _relative_rms(actual, exact):
    return ((actual.double() - exact).square().mean().sqrt() / exact.square().mean().sqrt().clamp_min(1e-30)).item()


def _relative_errors(y, x, weight, bias):
    """Relative RMS and largest error of y against the float64 convolution."""
    exact = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(), padding=1)
    rms = exact.square().mean().sqrt().clamp_min(1e-30)
    return _relative_rms(y, exact), ((y.double() - exact).abs().max() / rms).item()


def _module_pair(in_channels, out_channels, bias=True):
    """A seeded Conv2d and the WinogradConv2d sharing its parameters."""
    torch.manual_seed(0)
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
    return conv, WinogradConv2d.from_conv(conv)


@pytest.mark.parametrize(
    "shape",
    [(1, 16, 16, 9, 11), (2, 20, 33, 13, 7), (1, 64, 64, 33, 29), (3, 17, 16, 4, 8), (1, 32, 48, 1, 1)],
    ids=str,
)
@pytest.mark.parametrize("band_tiles", [0, 1, 3])
def test_matches_the_exact_convolution_within_the_stated_bound(shape, band_tiles):
    x, weight, bias = _case(*shape)
    y = op.winograd_conv3x3(x, op.transform_weight(weight), bias, band_tiles=band_tiles)
    assert y.shape == (shape[0], shape[2], shape[3], shape[4]) and y.dtype == torch.float32
    assert y.is_contiguous(memory_format=torch.channels_last)
    rms, largest = _relative_errors(y, x, weight, bias)
    assert rms < RELATIVE_RMS_BOUND and largest < RELATIVE_MAX_BOUND, (rms, largest)


def test_no_bias_and_either_input_layout():
    x, weight, _ = _case(2, 24, 16, 10, 12, bias=False)
    u = op.transform_weight(weight)
    from_nchw = op.winograd_conv3x3(x, u)
    from_channels_last = op.winograd_conv3x3(x.contiguous(memory_format=torch.channels_last), u)
    torch.testing.assert_close(from_nchw, from_channels_last, rtol=0, atol=0)
    assert _relative_errors(from_nchw, x, weight, None)[0] < RELATIVE_RMS_BOUND


def test_strided_views_are_read_as_their_values():
    x, weight, bias = _case(1, 16, 16, 20, 20)
    view = x[:, :, 2:15, 1:19:2]  # not dense in any layout
    y = op.winograd_conv3x3(view, op.transform_weight(weight), bias)
    assert _relative_errors(y, view, weight, bias)[0] < RELATIVE_RMS_BOUND


def test_degenerate_sizes():
    _, weight, bias = _case(1, 16, 16, 4, 4)
    u = op.transform_weight(weight)
    assert op.winograd_conv3x3(torch.zeros(0, 16, 5, 5), u, bias).shape == (0, 16, 5, 5)
    assert op.winograd_conv3x3(torch.zeros(2, 16, 0, 5), u, bias).shape == (2, 16, 0, 5)
    # No input channels: the output is the bias.
    empty = op.transform_weight(torch.zeros(16, 0, 3, 3))
    y = op.winograd_conv3x3(torch.zeros(1, 0, 3, 2), empty, bias)
    torch.testing.assert_close(y, bias.view(1, -1, 1, 1).expand(1, 16, 3, 2), rtol=0, atol=0)


def test_a_nan_stays_within_the_tiles_that_read_it():
    x, weight, bias = _case(1, 16, 16, 16, 16)
    x[0, 3, 9, 9] = float("nan")  # input row/col 9 is read by the tile of output rows/cols 8-11 (inputs 7-12) only
    y = op.winograd_conv3x3(x, op.transform_weight(weight), bias)
    nan = torch.isnan(y[0]).any(0)
    assert nan[8:11, 8:11].all()  # the 3x3 neighbourhood, as direct convolution
    outside = torch.ones_like(nan)
    outside[8:12, 8:12] = False
    assert not nan[outside].any()


def test_opcheck_and_compile():
    x, weight, bias = _case(1, 16, 16, 6, 7)
    u = op.transform_weight(weight)
    torch.library.opcheck(torch.ops.cycleisp_fast.winograd_conv3x3.default, (x, u, bias, 0))
    compiled = torch.compile(lambda t: op.winograd_conv3x3(t, u, bias) * 2, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), op.winograd_conv3x3(x, u, bias) * 2)


def test_transform_weight_is_computed_in_float64_and_rounded_once():
    weight = torch.randn(16, 16, 3, 3, dtype=torch.float64)
    u = op.transform_weight(weight)  # float64 weights: by torch, in float64
    assert u.shape == (36, 16, 16) and u.dtype == torch.float32 and u.is_contiguous()
    torch.testing.assert_close(u, op.transform_weight(weight.float()), rtol=2e-7, atol=1e-7)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("shape", [(16, 16), (24, 5), (3, 40), (1, 1)], ids=str)
def test_native_weight_transform_matches_the_float64_one(shape, flip):
    """The native transform (float32 CPU weights) against torch's float64 matmul: the same float64 sums rounded
    once, so equal to within an ulp; flipped = the transform of weight.flip(2, 3).transpose(0, 1)."""
    weight = torch.randn(*shape, 3, 3)
    native = op.transform_weight(weight, flip=flip)
    expected = op._transform_weight_in_torch(weight, flip)
    assert native.shape == expected.shape and native.is_contiguous()
    torch.testing.assert_close(native, expected, rtol=2.4e-7, atol=1e-30)
    if flip:
        torch.testing.assert_close(native, op.transform_weight(weight.flip(2, 3).transpose(0, 1).contiguous()))
    out = torch.full_like(native, float("nan"))
    assert op.transform_weight(weight, flip=flip, out=out) is out
    torch.testing.assert_close(out, native, rtol=0, atol=0)
    torch.library.opcheck(
        torch.ops.cycleisp_fast.winograd_transform_weight.default, (weight, op.KERNEL_TRANSFORM, flip, out)
    )


def test_transform_out_must_fit():
    weight = torch.randn(8, 4, 3, 3)
    for out in (torch.empty(36, 8, 4), torch.empty(36, 4, 8).double(), torch.empty(36, 8, 4).transpose(1, 2)):
        with pytest.raises(ValueError, match=r"out must be a contiguous float32 CPU tensor of shape \(36, 4, 8\)"):
            op.transform_weight(weight, out=out)
    with pytest.raises(ValueError, match="for a float32 CPU weight"):
        op.transform_weight(weight.double(), out=torch.empty(36, 4, 8))
    with pytest.raises(RuntimeError, match=r"out must be contiguous float32 \(36, 4, 8\)"):
        torch.ops.cycleisp_fast.winograd_transform_weight(weight, op.KERNEL_TRANSFORM, False, torch.empty(36, 8, 4))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x, u, b: op.winograd_conv3x3(x.double(), u, b), "x must be float32 on the CPU"),
        (lambda x, u, b: op.winograd_conv3x3(x[0], u, b), r"x must have shape \(N, C, H, W\)"),
        (lambda x, u, b: op.winograd_conv3x3(x, u[:, :8], b), r"weight must be transform_weight\(kernels\)"),
        (lambda x, u, b: op.winograd_conv3x3(x, u.double(), b), "weight must be float32"),
        (lambda x, u, b: op.winograd_conv3x3(x, u, b[:3]), r"bias must be None or \(16,\) float32"),
        (lambda x, u, b: op.winograd_conv3x3(x, u, b, band_tiles=-1), "band_tiles must be >= 0"),
        (lambda x, u, b: op.transform_weight(torch.zeros(4, 4, 5, 5)), r"weight must be the \(K, C, 3, 3\)"),
        (lambda x, u, b: op.transform_weight(torch.zeros(4, 4, 3, 3, dtype=torch.int32)), "floating dtype"),
    ],
)
def test_bad_arguments_name_what_was_expected(call, match):
    x, weight, bias = _case(1, 16, 16, 5, 5)
    with pytest.raises((ValueError, TypeError), match=match):
        call(x, op.transform_weight(weight), bias)


def test_the_registered_operator_checks_its_arguments_too():
    x, weight, bias = _case(1, 16, 16, 5, 5)
    with pytest.raises(RuntimeError, match="weight must be the transformed weight"):
        torch.ops.cycleisp_fast.winograd_conv3x3(x, op.transform_weight(weight)[:35], bias, 0)


# ---- the weight gradient ---------------------------------------------------------------------------------


def _exact_parameter_grads(x, grad, in_channels):
    """The weight and bias gradients of F.conv2d(x, g, b, padding=1) in float64 autograd."""
    k = grad.shape[1]
    weight = torch.zeros(k, in_channels, 3, 3, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    F.conv2d(x.double(), weight, bias, padding=1).backward(grad.double())
    return weight.grad, bias.grad


@pytest.mark.parametrize(
    "shape", [(1, 16, 16, 9, 11), (2, 20, 33, 13, 7), (1, 64, 64, 33, 29), (3, 17, 16, 4, 8), (1, 3, 5, 1, 1)], ids=str
)
@pytest.mark.parametrize("band_tiles", [0, 1, 3])
def test_weight_grad_matches_the_exact_gradients_within_the_stated_bound(shape, band_tiles):
    n, c, k, h, w = shape
    g = torch.Generator().manual_seed(1)
    x, grad = torch.randn(n, c, h, w, generator=g), torch.randn(n, k, h, w, generator=g)
    grad_weight, grad_bias = op.weight_grad(x, grad, band_tiles=band_tiles)
    assert grad_weight.shape == (k, c, 3, 3) and grad_bias.shape == (k,)
    assert grad_weight.dtype == grad_bias.dtype == torch.float32
    exact_weight, exact_bias = _exact_parameter_grads(x, grad, c)
    assert _relative_rms(grad_weight, exact_weight) < RELATIVE_RMS_BOUND
    assert _relative_rms(grad_bias, exact_bias) < RELATIVE_RMS_BOUND


def test_weight_grad_reads_any_layout_and_strided_views():
    x, grad = torch.randn(2, 16, 10, 12), torch.randn(2, 24, 20, 12)[:, :, ::2]
    expected = op.weight_grad(x, grad.contiguous())
    for xs, gs in [
        (x.contiguous(memory_format=torch.channels_last), grad),
        (x, grad.contiguous(memory_format=torch.channels_last)),
    ]:
        for actual, wanted in zip(op.weight_grad(xs, gs), expected):
            torch.testing.assert_close(actual, wanted, rtol=0, atol=0)


def test_weight_grad_of_degenerate_sizes_is_zero_or_empty():
    for x, grad in [
        (torch.zeros(0, 16, 5, 5), torch.zeros(0, 8, 5, 5)),
        (torch.zeros(2, 16, 0, 5), torch.zeros(2, 8, 0, 5)),
    ]:
        grad_weight, grad_bias = op.weight_grad(x, grad)
        assert grad_weight.shape == (8, 16, 3, 3) and not grad_weight.any() and not grad_bias.any()
    grad = torch.randn(1, 8, 3, 2)
    grad_weight, grad_bias = op.weight_grad(torch.zeros(1, 0, 3, 2), grad)  # no input channels: the bias alone
    assert grad_weight.shape == (8, 0, 3, 3)
    torch.testing.assert_close(grad_bias, grad.sum((0, 2, 3)))


def test_a_nan_in_the_output_gradient_reaches_its_channel_only():
    x, grad = torch.randn(1, 16, 12, 12), torch.randn(1, 16, 12, 12)
    grad[0, 5, 6, 6] = float("nan")
    grad_weight, grad_bias = op.weight_grad(x, grad)
    assert torch.isnan(grad_weight[5]).all() and torch.isnan(grad_bias[5])
    others = torch.arange(16) != 5
    assert torch.isfinite(grad_weight[others]).all() and torch.isfinite(grad_bias[others]).all()


def test_weight_grad_opcheck_and_compile():
    x, grad = torch.randn(1, 16, 6, 7), torch.randn(1, 16, 6, 7)
    torch.library.opcheck(
        torch.ops.cycleisp_fast.winograd_conv3x3_weight_grad.default, (x, grad, op.KERNEL_TRANSFORM, 0)
    )
    compiled = torch.compile(lambda a, b: op.weight_grad(a, b)[0] * 2, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x, grad), op.weight_grad(x, grad)[0] * 2)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x, g: op.weight_grad(x.double(), g), "x must be float32 on the CPU"),
        (lambda x, g: op.weight_grad(x, g.half()), "grad must be float32 on the CPU"),
        (lambda x, g: op.weight_grad(x, g[0]), r"grad must have shape \(N, K, H, W\)"),
        (lambda x, g: op.weight_grad(x, g[:, :, 1:]), r"grad must be \(N, K, H, W\) with x's N, H, W"),
        (lambda x, g: op.weight_grad(x, g, band_tiles=-2), "band_tiles must be >= 0"),
    ],
)
def test_weight_grad_bad_arguments_name_what_was_expected(call, match):
    with pytest.raises(ValueError, match=match):
        call(torch.randn(1, 16, 5, 5), torch.randn(1, 8, 5, 5))


def test_the_registered_weight_grad_operator_checks_its_arguments_too():
    with pytest.raises(RuntimeError, match="grad must be \\(N, K, H, W\\) with x's N, H, W"):
        torch.ops.cycleisp_fast.winograd_conv3x3_weight_grad(
            torch.randn(1, 16, 5, 5), torch.randn(1, 8, 4, 5), op.KERNEL_TRANSFORM, 0
        )
    with pytest.raises(RuntimeError, match=r"transform must be the \(6, 3\) float64 kernel transform G"):
        torch.ops.cycleisp_fast.winograd_conv3x3_weight_grad(
            torch.randn(1, 16, 5, 5), torch.randn(1, 8, 5, 5), op.KERNEL_TRANSFORM.float(), 0
        )


# ---- the module --------------------------------------------------------------------------------------------


def test_module_matches_its_convolution_and_keeps_its_keys():
    conv, fast = _module_pair(16, 32)
    assert fast.weight is conv.weight and fast.bias is conv.bias
    assert list(fast.state_dict()) == ["weight", "bias"]
    x = torch.randn(2, 16, 11, 6)
    with torch.no_grad():
        rms, _ = _relative_errors(fast(x), x, conv.weight, conv.bias)
    assert rms < RELATIVE_RMS_BOUND


def test_module_falls_back_to_direct_convolution_where_winograd_does_not_apply():
    conv, fast = _module_pair(16, 16)
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        half = fast.to(torch.bfloat16)(x.bfloat16())
        torch.testing.assert_close(half, conv.to(torch.bfloat16)(x.bfloat16()), rtol=0, atol=0)
        double = fast.to(torch.float64)(x.double())
        torch.testing.assert_close(double, conv.to(torch.float64)(x.double()), rtol=0, atol=0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.testing.assert_close(fast.float()(x), conv(x), rtol=0, atol=0)  # autocast's own convolution
        assert fast(x[:0]).shape == (0, 16, 8, 8)
        back = fast.float()(x)  # back in float32: Winograd again, with the weight transformed anew
        assert back.is_contiguous(memory_format=torch.channels_last)
        assert _relative_errors(back, x, conv.weight, conv.bias)[0] < RELATIVE_RMS_BOUND


@pytest.mark.parametrize("bias", [True, False])
def test_training_gradients_match_the_exact_convolution(bias):
    """conv3x3 (what the module runs with gradients): forward, input, weight and bias gradients by Winograd; all
    within the stated bound of float64 F.conv2d's."""
    conv, fast = _module_pair(16, 24, bias)
    x = torch.randn(2, 16, 9, 13, requires_grad=True)
    grad_out = torch.randn(2, 24, 9, 13)
    fast(x).backward(grad_out)
    exact = [t.detach().double().requires_grad_() for t in (x, conv.weight, *([conv.bias] if bias else []))]
    F.conv2d(exact[0], exact[1], exact[2] if bias else None, padding=1).backward(grad_out.double())
    for actual, expected in zip((x.grad, conv.weight.grad, conv.bias.grad if bias else None), exact):
        error = _relative_rms(actual, expected.grad)
        assert error < RELATIVE_RMS_BOUND, error
    assert conv.bias is None or conv.bias.grad is not None


def test_module_follows_changes_of_its_weight():
    conv, fast = _module_pair(16, 16)
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        fast(x)
        conv.weight.mul_(-2)  # in place, as an optimizer step
        rms, _ = _relative_errors(fast(x), x, conv.weight, conv.bias)
        assert rms < RELATIVE_RMS_BOUND
        other = nn.Conv2d(16, 16, 3, padding=1)
        fast.load_state_dict(other.state_dict())
        rms, _ = _relative_errors(fast(x), x, other.weight, other.bias)
        assert rms < RELATIVE_RMS_BOUND


def test_where_winograd_applies():
    assert winograd_applies(nn.Conv2d(MIN_CHANNELS, MIN_CHANNELS, 3, padding=1))
    for conv in (
        nn.Conv2d(8, 64, 3, padding=1),
        nn.Conv2d(64, 8, 3, padding=1),
        nn.Conv2d(64, 64, 3, padding=1, stride=2),
        nn.Conv2d(64, 64, 3, padding=2, dilation=2),
        nn.Conv2d(64, 64, 3, padding=1, groups=2),
        nn.Conv2d(64, 64, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(64, 64, 5, padding=2),
        nn.ConvTranspose2d(64, 64, 3, padding=1),
    ):
        assert not winograd_applies(conv), conv
    with pytest.raises(ValueError, match="WinogradConv2d is a 3x3 convolution with stride 1"):
        WinogradConv2d(8, 64)
    with pytest.raises(ValueError, match="Winograd does not apply"):
        WinogradConv2d.from_conv(nn.Conv2d(64, 64, 3, padding=1, stride=2))


def test_use_winograd_swaps_in_place_and_keeps_the_state_dict():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Sequential(nn.Conv2d(16, 16, 3, padding=1)))
    keys = list(model.state_dict())
    x = torch.randn(1, 3, 9, 9)
    with torch.no_grad():
        expected = model(x)
        assert use_winograd(model) == 1
        assert isinstance(model[2][0], WinogradConv2d) and type(model[0]) is nn.Conv2d
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    assert list(model.state_dict()) == keys


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="reads VmRSS (Linux)")
def test_repeated_calls_do_not_keep_their_outputs():
    """A regression test: a reference the kernel forgot to release kept every output alive (16 MiB a call here)."""

    def resident_mib() -> float:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024

    x, weight, bias = _case(1, 64, 64, 128, 128)
    u = op.transform_weight(weight.contiguous())
    for _ in range(3):
        op.winograd_conv3x3(x, u, bias)
        op.weight_grad(x, x)
    before = resident_mib()
    for _ in range(40):  # 4 MiB outputs: 160 MiB if each stayed
        op.winograd_conv3x3(x, u, bias)
        op.weight_grad(x, x)
    assert resident_mib() - before < 64
