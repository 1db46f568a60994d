"""Fused AIN: every fused backend against the plain-PyTorch reference (outputs and all gradients), float64
gradcheck, opcheck, compile, layouts, numerically hard inputs and bad input.

Tolerances: float32 / float64 use ``torch.testing.assert_close`` defaults (the reductions run in another
order than the reference's, so results agree to rounding, not bit for bit); float16 / bfloat16 compare
with atol = rtol = 1e-2 / 2e-2 (one or two ulps of the output dtype; statistics are float32 on both sides).
"""

import pytest
import torch

from cycleisp_fast import ops
from cycleisp_fast.reference.ain import adaptive_instance_norm as reference
from conftest import fused_backends, run_with_grads as run

BACKENDS = fused_backends("ain_forward")
LOW_PRECISION = {torch.float16: dict(atol=1e-2, rtol=1e-2), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}


def make_inputs(shape, dtype=torch.float32, scale=0.3):
    x = torch.randn(shape, dtype=torch.float64)
    gamma = scale * torch.randn(shape, dtype=torch.float64)
    beta = scale * torch.randn(shape, dtype=torch.float64)
    return [t.to(dtype) for t in (x, gamma, beta)]


def assert_matches_reference(backend, inputs, negative_slope, eps=1e-5):
    expected, grad_out = run(lambda *t: reference(*t, eps, negative_slope), inputs)
    actual, _ = run(lambda *t: ops.adaptive_instance_norm(*t, eps, negative_slope, backend=backend), inputs, grad_out)
    tolerance = LOW_PRECISION.get(inputs[0].dtype, {})
    for name, a, e in zip(("out", "grad_x", "grad_gamma", "grad_beta"), actual, expected):
        assert a.dtype == e.dtype and a.shape == e.shape, name
        torch.testing.assert_close(a, e, **tolerance, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("negative_slope", [None, 0.02])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 8, 8), (3, 1, 1, 9)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16], ids=str)
def test_backend_matches_reference(backend, negative_slope, shape, dtype):
    assert_matches_reference(backend, make_inputs(shape, dtype), negative_slope)


@pytest.mark.parametrize("backend", BACKENDS)
def test_planes_larger_than_one_chunk(backend):
    # 130 x 130 = 16900 elements: two chunks of the split reduction per plane
    assert_matches_reference(backend, make_inputs((1, 2, 130, 130)), 0.02)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_pixel_planes_give_beta_without_nan(backend):
    x, gamma, beta = make_inputs((2, 3, 1, 1))
    out = ops.adaptive_instance_norm(x, gamma, beta, backend=backend)
    assert torch.equal(out, beta)  # x - mean = 0 exactly
    assert_matches_reference(backend, (x, gamma, beta), 0.02)


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
    op = {"native": torch.ops.cycleisp_fast.ain_forward, "triton": torch.ops.cycleisp_fast.ain_forward_triton}[backend]
    x, gamma, beta = make_inputs((2, 3, 6, 5))
    _, mean, rstd = op(x, gamma, beta, 1e-5, None)
    var, expected_mean = torch.var_mean(x, dim=(2, 3), correction=0)
    torch.testing.assert_close(mean, expected_mean)
    torch.testing.assert_close(rstd, torch.rsqrt(var + 1e-5))
    assert mean.dtype == rstd.dtype == torch.float32


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
@pytest.mark.parametrize("negative_slope", [None, 0.3])
def test_gradcheck_float64(backend, negative_slope):
    inputs = [t.requires_grad_(True) for t in make_inputs((2, 2, 3, 4), torch.float64)]
    assert torch.autograd.gradcheck(
        lambda *t: ops.adaptive_instance_norm(*t, 1e-5, negative_slope, backend=backend), inputs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend):
    forward, backward = {
        "native": (torch.ops.cycleisp_fast.ain_forward, torch.ops.cycleisp_fast.ain_backward),
        "triton": (torch.ops.cycleisp_fast.ain_forward_triton, torch.ops.cycleisp_fast.ain_backward_triton),
    }[backend]
    x, gamma, beta = [t.requires_grad_(True) for t in make_inputs((2, 3, 4, 5))]
    for slope in (None, 0.02):
        torch.library.opcheck(forward, (x, gamma, beta, 1e-5, slope))
    with torch.no_grad():
        _, mean, rstd = forward(x, gamma, beta, 1e-5, 0.02)
    torch.library.opcheck(backward, (torch.randn_like(x), x.detach(), gamma.detach(), beta.detach(), mean, rstd, 0.02))


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_compile_fullgraph(backend):
    def block(x, gamma, beta):
        return ops.adaptive_instance_norm(x * 2, gamma, beta, negative_slope=0.02, backend=backend) + x

    inputs = make_inputs((2, 3, 6, 6))
    expected, grad_out = run(lambda x, g, b: reference(x * 2, g, b, negative_slope=0.02) + x, inputs)
    actual, _ = run(torch.compile(block, fullgraph=True), inputs, grad_out)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("backend", BACKENDS)
def test_channels_last_non_contiguous_and_stride_zero(backend):
    x, gamma, beta = make_inputs((2, 4, 6, 5))
    as_channels_last = [t.to(memory_format=torch.channels_last) for t in (x, gamma, beta)]
    assert_matches_reference(backend, as_channels_last, 0.02)
    transposed = [t.transpose(2, 3).contiguous().transpose(2, 3) for t in (x, gamma, beta)]
    assert_matches_reference(backend, transposed, None)
    expanded_beta = torch.randn(1, 4, 1, 1).expand(2, 4, 6, 5)
    out = ops.adaptive_instance_norm(x, gamma, expanded_beta, backend=backend)
    torch.testing.assert_close(out, reference(x, gamma, expanded_beta))
    # loss.sum().backward() hands the backward a stride-0 gradient
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, gamma, beta)]
    ops.adaptive_instance_norm(*leaves, negative_slope=0.02, backend=backend).sum().backward()
    reference_leaves = [t.detach().clone().requires_grad_(True) for t in (x, gamma, beta)]
    reference(*reference_leaves, negative_slope=0.02).sum().backward()
    for a, e in zip(leaves, reference_leaves):
        torch.testing.assert_close(a.grad, e.grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend):
    x, gamma, beta = make_inputs((0, 3, 4, 4))
    assert ops.adaptive_instance_norm(x, gamma, beta, backend=backend).shape == (0, 3, 4, 4)


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_bad_input_names_the_argument(backend):
    x, gamma, beta = make_inputs((1, 2, 4, 4))
    cases = [
        (lambda: ops.adaptive_instance_norm(x[0], gamma, beta, backend=backend), ValueError, "x must have shape"),
        (lambda: ops.adaptive_instance_norm(x, gamma[:, :1], beta, backend=backend), ValueError, "gamma must have x's shape"),
        (lambda: ops.adaptive_instance_norm(x, gamma, beta.double(), backend=backend), TypeError, "beta must have x's dtype"),
        (lambda: ops.adaptive_instance_norm(x, gamma.to("meta"), beta, backend=backend), ValueError, "gamma must be on x's device"),
        (lambda: ops.adaptive_instance_norm(x.int(), gamma, beta, backend=backend), TypeError, "x must have a floating"),
        (lambda: ops.adaptive_instance_norm(x, gamma, beta, eps=0, backend=backend), ValueError, "eps must be"),
        (lambda: ops.adaptive_instance_norm(x, gamma, beta, negative_slope=float("nan"), backend=backend),
         ValueError, "negative_slope must be"),
        (lambda: ops.adaptive_instance_norm(x, [1.0], beta, backend=backend), TypeError, "gamma must be a torch.Tensor"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
