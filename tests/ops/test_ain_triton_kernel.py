"""The Triton AIN launchers (``cycleisp_fast.triton_kernels.ain``), called directly, against the plain-PyTorch
reference and its autograd gradients. They run in Triton's CPU interpreter (tests/conftest.py sets
TRITON_INTERPRET=1), so the shapes stay small; 1x2x130x130 has 16900 > CHUNK elements per plane, two chunks.

Tolerances: ``torch.testing.assert_close`` defaults for the dtype (float32: rtol 1.3e-6, atol 1e-5; float64:
1e-7, 1e-7; float16: 1e-3, 1e-5; bfloat16: 1.6e-2, 1e-5), for outputs, gradients and statistics alike:
both sides compute in float32 (float64) and round once, and the plane reductions here are short enough to
stay inside them (measured errors: float32 below 2e-6 absolute). The |mean| >> std test compares float32
against a float64 computation of the same float32 input: the mean within 7e-5 (float32 spacing at 1000 is
6.1e-5; summing n_i * mean_i unshifted across chunks already misses by 8e-5), rstd within rtol 1e-6, outputs
and gradients within 1e-3 (x - mean carries the mean's rounding); E[x^2] - E[x]^2 in float32 misses that
variance by ~20%.
"""

import math
import re
from pathlib import Path

import pytest
import torch

from cycleisp_fast.reference.ain import adaptive_instance_norm
from cycleisp_fast.triton_kernels import ain as kernels
from cycleisp_fast.triton_kernels import ain_backward

EPS = 1e-5
SLOPES = [None, 0.02]
KERNELS = [(kernels, "_ain_stats_kernel"), (kernels, "_ain_modulate_kernel")]
KERNELS += [(ain_backward, "_ain_grad_sums_kernel"), (ain_backward, "_ain_input_grad_kernel")]
AIN_MATH = Path(__file__).resolve().parents[2] / "csrc" / "ops" / "ain_math.h"


def make_inputs(shape, dtype, shift=0.0):
    """x (shift + N(0, 1)), gamma, beta and grad_out of ``shape``, drawn in float64 and rounded to dtype."""
    x = shift + torch.randn(shape, dtype=torch.float64)
    return [x.to(dtype)] + [torch.randn(shape, dtype=torch.float64).to(dtype) for _ in range(3)]


def reference(x, gamma, beta, grad_out, slope, dtype=None):
    """The reference output and its gradients wrt (x, gamma, beta), computed from the inputs cast to dtype."""
    dtype = dtype or x.dtype
    leaves = [t.detach().to(dtype).requires_grad_(True) for t in (x, gamma, beta)]
    out = adaptive_instance_norm(*leaves, EPS, slope)
    return out, torch.autograd.grad(out, leaves, grad_out.to(dtype))


def triton_ain(x, gamma, beta, grad_out, slope):
    """out, mean, rstd of ain_forward and the gradients of ain_backward."""
    out, mean, rstd = kernels.ain_forward(x, gamma, beta, EPS, slope)
    return out, mean, rstd, ain_backward.ain_backward(grad_out, x, gamma, beta, mean, rstd, slope)


def assert_statistics(mean, rstd, x):
    """mean and rstd ``(N, C)`` against torch.var_mean over H x W in the statistics dtype."""
    stats_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    assert mean.dtype == rstd.dtype == stats_dtype and mean.shape == rstd.shape == x.shape[:2]
    var, expected_mean = torch.var_mean(x.to(stats_dtype), dim=(2, 3), unbiased=False)
    torch.testing.assert_close(mean, expected_mean)
    torch.testing.assert_close(rstd, (var + EPS).rsqrt())


def test_chunk_mirrors_the_cpp_constant():
    k_chunk = int(re.search(r"kChunk = (\d+);", AIN_MATH.read_text()).group(1))
    assert kernels.CHUNK == k_chunk
    assert [kernels.chunks_per_plane(n) for n in (0, 1, k_chunk, 130 * 130)] == [1, 1, 1, 2]


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 130, 130)], ids=str)
@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_matches_reference_forward_and_backward(shape, slope, dtype):
    x, gamma, beta, grad_out = make_inputs(shape, dtype)
    out_ref, grads_ref = reference(x, gamma, beta, grad_out, slope)
    out, mean, rstd, grads = triton_ain(x, gamma, beta, grad_out, slope)
    assert out.dtype == dtype and out.is_contiguous()
    torch.testing.assert_close(out, out_ref)
    assert_statistics(mean, rstd, x)
    for name, grad, grad_ref in zip(("x", "gamma", "beta"), grads, grads_ref):
        assert grad.dtype == dtype and grad.shape == x.shape, name
        torch.testing.assert_close(grad, grad_ref, msg=lambda m, name=name: f"grad_{name}: {m}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_loads_and_stores_in_its_dtype(dtype):
    x, gamma, beta, grad_out = make_inputs((2, 3, 5, 7), dtype)
    out_ref, grads_ref = reference(x, gamma, beta, grad_out, 0.02)
    out, mean, rstd, grads = triton_ain(x, gamma, beta, grad_out, 0.02)
    torch.testing.assert_close(out, out_ref)
    assert_statistics(mean, rstd, x)
    for grad, grad_ref in zip(grads, grads_ref):
        torch.testing.assert_close(grad, grad_ref)


@pytest.mark.parametrize("slope", SLOPES)
def test_single_element_plane_gives_beta_and_no_nan(slope):
    x, gamma, beta, grad_out = make_inputs((2, 3, 1, 1), torch.float32)
    out, mean, rstd, (grad_x, grad_gamma, grad_beta) = triton_ain(x, gamma, beta, grad_out, slope)
    activated = beta if slope is None else torch.where(beta > 0, beta, beta * slope)
    torch.testing.assert_close(out, activated)
    torch.testing.assert_close(mean, x[:, :, 0, 0])
    torch.testing.assert_close(rstd, torch.full_like(rstd, 1 / math.sqrt(EPS)))
    torch.testing.assert_close(grad_x, torch.zeros_like(x))
    torch.testing.assert_close(grad_gamma, torch.zeros_like(x))
    torch.testing.assert_close(
        grad_beta, grad_out if slope is None else torch.where(beta > 0, grad_out, grad_out * slope)
    )


def test_large_mean_is_stable_across_chunks():
    x, gamma, beta, grad_out = make_inputs((1, 2, 130, 130), torch.float32, shift=1000.0)
    out_ref, grads_ref = reference(x, gamma, beta, grad_out, 0.02, dtype=torch.float64)
    out, mean, rstd, grads = triton_ain(x, gamma, beta, grad_out, 0.02)
    var, expected_mean = torch.var_mean(x.double(), dim=(2, 3), unbiased=False)
    torch.testing.assert_close(mean.double(), expected_mean, rtol=0, atol=7e-5)
    torch.testing.assert_close(rstd.double(), (var + EPS).rsqrt(), rtol=1e-6, atol=0)
    torch.testing.assert_close(out.double(), out_ref, rtol=1e-3, atol=1e-3)
    for grad, grad_ref in zip(grads, grads_ref):
        torch.testing.assert_close(grad.double(), grad_ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 0, 4, 4)], ids=str)
def test_no_planes_returns_empty_outputs_without_launching(shape, monkeypatch):
    for module, name in KERNELS:
        monkeypatch.setattr(module, name, None)  # launching one would raise
    x, gamma, beta, grad_out = make_inputs(shape, torch.float32)
    out, mean, rstd, grads = triton_ain(x, gamma, beta, grad_out, 0.02)
    assert out.shape == x.shape and mean.shape == rstd.shape == shape[:2]
    assert all(grad.shape == x.shape for grad in grads)


@pytest.mark.parametrize("shape", [(2, 3, 0, 4), (2, 3, 4, 0)], ids=str)
def test_empty_planes_give_mean_zero_and_rstd_of_eps(shape):
    x, gamma, beta, grad_out = make_inputs(shape, torch.float32)
    out, mean, rstd, grads = triton_ain(x, gamma, beta, grad_out, None)
    assert out.shape == x.shape and all(grad.shape == x.shape for grad in grads)
    torch.testing.assert_close(mean, torch.zeros(shape[:2]))
    torch.testing.assert_close(rstd, torch.full(shape[:2], 1 / math.sqrt(EPS)))
