"""Fused AIN: every fused backend against the plain-PyTorch reference (outputs and all gradients), float64
gradcheck, opcheck, compile, layouts, numerically hard inputs and bad input.

Tolerances: float32 / float64 use ``torch.testing.assert_close`` defaults (the reductions run in another
order than the reference's, so results agree to rounding, not bit for bit); float16 / bfloat16 compare
with atol = rtol = 1e-2 / 2e-2 (one or two ulps of the output dtype; statistics are float32 on both sides).
"""

import pytest
import torch
from conftest import fused_backends
from conftest import run_with_grads as run
from harness import OpTester

from cycleisp_fast import ops
from cycleisp_fast.reference.ain import adaptive_instance_norm as reference

BACKENDS = fused_backends("ain_forward")
OPS = {"native": ("ain_forward", "ain_backward"), "triton": ("ain_forward_triton", "ain_backward_triton")}
"""The registered (forward, backward) operators of each fused backend."""


def registered(backend):
    """``backend``'s registered AIN (forward, backward) operators."""
    return tuple(getattr(torch.ops.cycleisp_fast, name) for name in OPS[backend])


class TestAIN(OpTester):
    """The shared op tests over the case ``adaptive_instance_norm`` (x, gamma, beta, with and without the fused
    LeakyReLU): every dtype against the reference (float32 sizes include 1 x 1 planes, one row and 130 x 130:
    two chunks of the split reduction), layouts (constant planes expanded from one pixel too), empty batch, float64
    gradcheck and opcheck."""

    family = "ain"
    case_names = ("adaptive_instance_norm",)
    gradcheck_sizes = {"adaptive_instance_norm": (2, 2, 3, 4)}
    layouts = OpTester.layouts + ("pixel_broadcast",)  # stride 0 in every dimension but the channels

    def opcheck_calls(self, backend):
        """The forward (both slopes) and the backward of ``backend``'s registered AIN operators."""
        forward, backward = registered(backend)
        x, gamma, beta = [t.requires_grad_(True) for t in make_inputs((2, 3, 4, 5))]
        calls = [(forward, (x, gamma, beta, 1e-5, slope)) for slope in (None, 0.02)]
        with torch.no_grad():
            out, mean, rstd = forward(x, gamma, beta, 1e-5, 0.02)
        grad = torch.randn_like(x)
        calls.append((backward, (grad, x.detach(), gamma.detach(), beta.detach(), mean, rstd, 0.02)))
        calls.append((backward, (grad, x.detach(), gamma.detach(), out, mean, rstd, 0.02, True)))
        return calls


def make_inputs(shape, dtype=torch.float32, scale=0.3):
    x = torch.randn(shape, dtype=torch.float64)
    gamma = scale * torch.randn(shape, dtype=torch.float64)
    beta = scale * torch.randn(shape, dtype=torch.float64)
    return [t.to(dtype) for t in (x, gamma, beta)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("slope", [None, 0.0, 0.02, -0.3], ids=str)
def test_the_backward_keeps_the_output_as_gate_where_its_sign_is_the_pre_activations(backend, slope):
    """For a slope >= 0 (or none) the fused op keeps its output, not beta, for the LeakyReLU's gate (the next
    convolution keeps that output anyway); for a negative slope, beta. Gradients as the reference's either way
    (under torch.compile it keeps beta: see test_torch_compile_fullgraph, where inductor overwrote a kept output)."""
    x, gamma, beta = (t.requires_grad_() for t in make_inputs((2, 3, 6, 5)))
    x.data[0, 1, 2, 2] = float("nan")  # a NaN plane: its gate takes the slope, as z's would
    out = ops.adaptive_instance_norm(x, gamma, beta, 1e-5, slope, backend=backend)
    kept = {t.untyped_storage().data_ptr() for t in out.grad_fn.saved_tensors}
    gate = beta if slope is not None and slope < 0 else out
    other = out if gate is beta else beta
    assert gate.untyped_storage().data_ptr() in kept and other.untyped_storage().data_ptr() not in kept
    grad = torch.randn(2, 3, 6, 5)
    expected = reference(x, gamma, beta, 1e-5, slope)
    for actual, wanted in zip(
        torch.autograd.grad(out, (x, gamma, beta), grad), torch.autograd.grad(expected, (x, gamma, beta), grad)
    ):
        torch.testing.assert_close(actual, wanted, equal_nan=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_backward_refuses_the_output_as_gate_for_a_negative_slope(backend):
    forward, backward = registered(backend)
    x, gamma, beta = make_inputs((1, 2, 3, 3))
    out, mean, rstd = forward(x, gamma, beta, 1e-5, -0.3)
    with pytest.raises(RuntimeError, match="gate_is_output needs a slope >= 0"):
        backward(torch.ones_like(x), x, gamma, out, mean, rstd, -0.3, True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_pixel_planes_give_beta_without_nan(backend):
    # (2, 3, 1, 1) is also a selftest size of the case: TestAIN compares it with the reference
    x, gamma, beta = make_inputs((2, 3, 1, 1))
    out = ops.adaptive_instance_norm(x, gamma, beta, backend=backend)
    assert torch.equal(out, beta)  # x - mean = 0 exactly


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_large_mean_is_stable(backend):
    # values 1000 + N(0, 1): E[x^2] - E[x]^2 in float32 would lose every digit of the variance
    x = 1000 + torch.randn(2, 3, 64, 64)
    gamma, beta = torch.zeros_like(x), torch.zeros_like(x)
    out = ops.adaptive_instance_norm(x, gamma, beta, backend=backend).double()
    x64 = x.double()
    var, mean = torch.var_mean(x64, dim=(2, 3), keepdim=True, correction=0)
    exact = (x64 - mean) / torch.sqrt(var + 1e-5)
    assert (out - exact).abs().max() < 1e-4  # float32 inputs near 1000 are spaced 6e-5 apart
    assert abs(out.std(dim=(2, 3), correction=0).mean().item() - 1) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_saved_statistics(backend):
    op = registered(backend)[0]
    x, gamma, beta = make_inputs((2, 3, 6, 5))
    _, mean, rstd = op(x, gamma, beta, 1e-5, None)
    var, expected_mean = torch.var_mean(x, dim=(2, 3), correction=0)
    torch.testing.assert_close(mean, expected_mean)
    torch.testing.assert_close(rstd, torch.rsqrt(var + 1e-5))
    assert mean.dtype == rstd.dtype == torch.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph(backend):
    def block(x, gamma, beta):
        return ops.adaptive_instance_norm(x * 2, gamma, beta, negative_slope=0.02, backend=backend) + x

    inputs = make_inputs((2, 3, 6, 6))
    expected, grad_out = run(lambda x, g, b: reference(x * 2, g, b, negative_slope=0.02) + x, inputs)
    actual, _ = run(torch.compile(block, fullgraph=True), inputs, grad_out)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_bad_input_names_the_argument(backend):
    x, gamma, beta = make_inputs((1, 2, 4, 4))
    cases = [
        (lambda: ops.adaptive_instance_norm(x[0], gamma, beta, backend=backend), ValueError, "x must have shape"),
        (
            lambda: ops.adaptive_instance_norm(x, gamma[:, :1], beta, backend=backend),
            ValueError,
            "gamma must have x's shape",
        ),
        (
            lambda: ops.adaptive_instance_norm(x, gamma, beta.double(), backend=backend),
            TypeError,
            "beta must have x's dtype",
        ),
        (
            lambda: ops.adaptive_instance_norm(x, gamma.to("meta"), beta, backend=backend),
            ValueError,
            "gamma must be on x's device",
        ),
        (
            lambda: ops.adaptive_instance_norm(x.int(), gamma, beta, backend=backend),
            TypeError,
            "x must have a floating",
        ),
        (lambda: ops.adaptive_instance_norm(x, gamma, beta, eps=0, backend=backend), ValueError, "eps must be"),
        (
            lambda: ops.adaptive_instance_norm(x, gamma, beta, negative_slope=float("nan"), backend=backend),
            ValueError,
            "negative_slope must be",
        ),
        (
            lambda: ops.adaptive_instance_norm(x, [1.0], beta, backend=backend),
            TypeError,
            "gamma must be a torch.Tensor",
        ),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()


@pytest.mark.skipif("native" not in BACKENDS, reason="needs the compiled extension")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(2, 64, 9, 7), (1, 3, 130, 130)], ids=str)  # the second: several pixel runs
def test_channels_last_stays_channels_last_on_the_cpu(dtype, shape):
    """The CPU kernel reads and writes channels_last features (what Winograd convolutions give) without a copy;
    results as the reference's, and the fake kernel says the same layout (opcheck)."""
    x, gamma, beta = (t.contiguous(memory_format=torch.channels_last) for t in make_inputs(shape, dtype))
    for slope in (None, 0.02):
        out = ops.adaptive_instance_norm(x, gamma, beta, 1e-5, slope, backend="native")
        assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
        expected = reference(x.double(), gamma.double(), beta.double(), 1e-5, slope).to(dtype)
        tolerance = {"rtol": 2e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {}
        torch.testing.assert_close(out, expected, **tolerance)
    torch.library.opcheck(torch.ops.cycleisp_fast.ain_forward.default, (x, gamma, beta, 1e-5, 0.02))


@pytest.mark.skipif("native" not in BACKENDS, reason="needs the compiled extension")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("shape", [(2, 64, 9, 7), (1, 3, 130, 130)], ids=str)
def test_channels_last_backward_stays_channels_last_on_the_cpu(dtype, shape):
    """The CPU backward reads a channels_last gradient and features as they are and returns channels_last
    gradients; all three as the reference's (float64 autograd), and the fake kernel says the same layout."""
    x, gamma, beta = (
        t.contiguous(memory_format=torch.channels_last).requires_grad_() for t in make_inputs(shape, dtype)
    )
    grad = torch.randn(shape, dtype=dtype).contiguous(memory_format=torch.channels_last)
    for slope in (None, 0.02):
        for t in (x, gamma, beta):
            t.grad = None
        ops.adaptive_instance_norm(x, gamma, beta, 1e-5, slope, backend="native").backward(grad)
        exact = [t.detach().double().requires_grad_() for t in (x, gamma, beta)]
        reference(*exact, 1e-5, slope).backward(grad.double())
        tolerance = {"rtol": 2e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {}
        for actual, expected in zip((x, gamma, beta), exact):
            assert actual.grad.is_contiguous(memory_format=torch.channels_last) and not actual.grad.is_contiguous()
            torch.testing.assert_close(actual.grad, expected.grad.to(dtype), **tolerance)
    _, mean, rstd = torch.ops.cycleisp_fast.ain_forward(x.detach(), gamma.detach(), beta.detach(), 1e-5, 0.02)
    torch.library.opcheck(
        torch.ops.cycleisp_fast.ain_backward.default,
        (grad, x.detach(), gamma.detach(), beta.detach(), mean, rstd, 0.02),
    )


@pytest.mark.skipif("native" not in BACKENDS, reason="needs the compiled extension")
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=str)
def test_channels_last_non_finite_values_propagate_as_the_reference(value):
    """The channels_last CPU path (its own reduction order) gives NaN and infinities where the reference does."""
    x, gamma, beta = make_inputs((1, 32, 9, 7))
    x[0, 5, 2, 3] = x[0, 20, 0, 0] = value
    laid_out = [t.contiguous(memory_format=torch.channels_last) for t in (x, gamma, beta)]
    for slope in (None, 0.02):
        out = ops.adaptive_instance_norm(*laid_out, 1e-5, slope, backend="native")
        expected = reference(x, gamma, beta, 1e-5, slope)
        torch.testing.assert_close(out, expected, equal_nan=True)
