"""Fused dual attention (the tail of CycleISP's DAB): every fused backend against the plain-PyTorch
reference, outputs and the gradients of res, x and all seven weights; float64 gradcheck, opcheck, layouts,
mixed dtypes and bad input.

Every result is compared with the float64 reference of the same (rounded) inputs, its error measured relative
to the largest magnitude of the expected tensor (the weight gradients are sums over N * H * W * C terms, taken
in another order than the reference's): at most 1e-12 in float64; in float32 at most 4x the error of the
float32 reference itself (the official computation), or 1e-6; 1e-2 (float16) and 2e-2 (bfloat16) for
low-precision features, one or two ulps of the output dtype (the fused backends compute in float32).
"""

import pytest
import torch
from conftest import fused_backends
from conftest import run_with_grads as run
from harness import OpTester

from cycleisp_fast import ops
from cycleisp_fast.reference.dual_attention import dual_attention as reference

BACKENDS = fused_backends("dual_attention_forward")
RELATIVE_TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 1e-2, torch.bfloat16: 2e-2}
NAMES = (
    "out",
    "grad_res",
    "grad_x",
    "grad_sa_weight",
    "grad_ca_w1",
    "grad_ca_b1",
    "grad_ca_w2",
    "grad_ca_b2",
    "grad_proj_w",
    "grad_proj_b",
)
OPS = {
    "native": ("dual_attention_forward", "dual_attention_backward"),
    "triton": ("dual_attention_forward_triton", "dual_attention_backward_triton"),
}


def make_inputs(shape, reduction, dtype=torch.float32, weight_dtype=None):
    """res, x (shape) and the seven weights of a DAB tail with C = shape[1], r = reduction."""
    n, c, h, w = shape
    hidden = c // reduction
    features = [torch.randn(shape, dtype=torch.float64) for _ in range(2)]
    weights = [
        0.3 * torch.randn(s, dtype=torch.float64)
        for s in ((1, 2, 3, 3), (hidden, c, 1, 1), (hidden,), (c, hidden, 1, 1), (c,), (c, 2 * c, 1, 1), (c,))
    ]
    return [t.to(dtype) for t in features] + [t.to(weight_dtype or dtype) for t in weights]


def relative_errors(actual, expected):
    """max |a - e| / max |e| of each pair."""
    return [
        (a.double() - e.double()).abs().max().item() / max(e.double().abs().max().item(), 1e-30)
        for a, e in zip(actual, expected)
    ]


def assert_close_relative(actual, expected, tolerances, names=NAMES):
    for name, a, e, error, tolerance in zip(names, actual, expected, relative_errors(actual, expected), tolerances):
        assert a.shape == e.shape, name
        assert error <= tolerance, f"{name}: error {error:.3g} x max |expected| > {tolerance:.3g}"


def assert_matches_reference(backend, inputs, grad_out=None):
    """Output and all nine gradients of ``backend`` against the float64 reference (see the module docstring);
    grad_out ``"sum"``: the stride-0 ones that ``out.sum().backward()`` hands the backward, else drawn."""
    dtype = inputs[0].dtype
    summed = grad_out == "sum"

    def cast(grad, to):
        return torch.ones((), dtype=to).expand(grad.shape) if summed else grad.to(to)

    if summed:
        grad_out = torch.ones((), dtype=torch.float64).expand(inputs[0].shape)
    expected, grad_out = run(reference, [t.double() for t in inputs], grad_out)
    actual, _ = run(lambda *t: ops.dual_attention(*t, backend=backend), inputs, cast(grad_out, dtype))
    assert [a.dtype for a in actual] == [dtype] + [t.dtype for t in inputs]
    tolerances = [RELATIVE_TOLERANCE[dtype]] * len(NAMES)
    if dtype == torch.float32:
        official, _ = run(reference, inputs, cast(grad_out, torch.float32))
        tolerances = [
            max(4 * error, tolerance) for error, tolerance in zip(relative_errors(official, expected), tolerances)
        ]
    assert_close_relative(actual, expected, tolerances)


class TestDualAttention(OpTester):
    """The shared op tests over the case ``dual_attention`` (the denoisers' and the ISP's widths, reduction 16, one
    pixel, several tiles in float32), compared as the module docstring says: every dtype (half precision at the
    first size), layouts (channels_last, transposed strides of features and weights, stride-0 batch and gradient),
    empty batch, opcheck of the forward and the backward."""

    family = "dual_attention"
    case_names = ("dual_attention",)

    def sizes(self, case, dtype):
        """The first test size only in half precision."""
        sizes = super().sizes(case, dtype)
        return sizes[:1] if dtype in (torch.float16, torch.bfloat16) else sizes

    def assert_matches_reference(self, case, backend, inputs, variant, grad_output=None, label=""):
        """Against the float64 reference, relative to each result's largest magnitude (module docstring)."""
        assert not variant.kwargs
        try:
            assert_matches_reference(backend, inputs, grad_output)
        except AssertionError as error:
            raise AssertionError(f"{label}: {error}") from None

    def opcheck_calls(self, backend):
        """The forward, then the backward on the forward's saved tensors."""
        forward, backward = (getattr(torch.ops.cycleisp_fast, name) for name in OPS[backend])
        inputs = [t.requires_grad_(True) for t in make_inputs((2, 16, 4, 5), 4)]
        yield forward, tuple(inputs)
        res, x, *weights = (t.detach() for t in inputs)
        with torch.no_grad():
            _, pool, argmax, channel_mean = forward(res, x, *weights[:7])
        yield backward, (torch.randn_like(res), res, pool, argmax, channel_mean, *weights[:6])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape, reduction", [((2, 8, 3, 3), 4), ((1, 1, 2, 3), 1), ((2, 16, 37, 29), 2)], ids=str)
def test_small_channel_counts_and_several_tiles(backend, shape, reduction):
    """C = 1 (max = mean = res), C = 8 and C = 16 in float64; 37 x 29 = 1073 pixels span several tiles of the
    kernels (TestDualAttention: C = 64 and 96, reduction 16)."""
    assert_matches_reference(backend, make_inputs(shape, reduction, torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(2, 64, 5, 7), (1, 96, 7, 3)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_reduction_8(backend, shape, dtype):
    """Reduction 8: twice the hidden channels of the case's (TestDualAttention) reduction 16, the denoisers'."""
    assert_matches_reference(backend, make_inputs(shape, 8, dtype))


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_weights_with_bfloat16_features(backend):
    # mixed precision: float32 parameters, bfloat16 activations; gradients come back in each input's dtype
    assert_matches_reference(backend, make_inputs((2, 64, 4, 5), 8, torch.bfloat16, weight_dtype=torch.float32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_saved_tensors(backend):
    forward = getattr(torch.ops.cycleisp_fast, OPS[backend][0])
    res, x, *weights = make_inputs((2, 8, 4, 5), 4)
    res[0, 3, 1, 1] = res[0, 5, 1, 1] = res[0, :, 1, 1].max() + 1  # a tie: the first channel wins
    _, pool, argmax, channel_mean = forward(res, x, *weights)
    torch.testing.assert_close(pool, torch.stack([res.amax(1), res.mean(1)], dim=1))
    assert argmax.dtype == torch.int32 and argmax[0, 1, 1] == 3
    torch.testing.assert_close(argmax.long(), res.argmax(1))
    torch.testing.assert_close(channel_mean, res.mean((2, 3)))


@pytest.mark.skipif("native" not in BACKENDS, reason="native kernels are not built")
def test_channels_last_pool_keeps_the_first_max_and_the_first_nan():
    """The CPU kernel pools a channels_last pixel 16 channels at a time and merges the lanes: ties within a lane,
    across lanes and in the channels past the last whole block, and NaNs, resolve as torch.max does."""
    forward = torch.ops.cycleisp_fast.dual_attention_forward
    res, x, *weights = make_inputs((1, 40, 2, 3), 4)  # 40 channels: two blocks of 16 and 8 more
    pixel = res[0, :, 0, 0]
    pixel[4] = pixel[20] = 9  # one lane (4 = 20 mod 16): channel 4
    res[0, 3, 0, 1] = res[0, 17, 0, 1] = 9  # two lanes: channel 3
    res[0, 37, 0, 2] = res[0, 5, 0, 2] = 9  # a lane and the remainder: channel 5
    res[0, 30, 1, 0] = res[0, 12, 1, 0] = float("nan")  # the first NaN: channel 12
    res[0, 36, 1, 1] = float("nan")  # a NaN among the remainder only: channel 36
    res[0, 33, 1, 2] = 9  # the largest in the remainder
    _, pool, argmax, _ = forward(res.contiguous(memory_format=torch.channels_last), x, *weights)
    assert argmax[0].tolist() == [[4, 3, 5], [12, 36, 33]]
    expected_max = res.amax(1)
    torch.testing.assert_close(pool[:, 0], expected_max, equal_nan=True)
    torch.testing.assert_close(pool[:, 1], res.mean(1), equal_nan=True)


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_gradcheck_float64(backend):
    inputs = [t.requires_grad_(True) for t in make_inputs((2, 4, 3, 4), 2, torch.float64)]
    assert torch.autograd.gradcheck(lambda *t: ops.dual_attention(*t, backend=backend), inputs)


@pytest.mark.skipif("native" not in BACKENDS, reason="native kernels are not built")
def test_native_cpu_keeps_channels_last_without_copies():
    # the CPU kernel runs channels_last features as they are: out and grad_res come back channels_last
    inputs = [t.requires_grad_(True) for t in make_inputs((2, 16, 5, 6), 4)]
    res, x = (t.detach().to(memory_format=torch.channels_last).requires_grad_(True) for t in inputs[:2])
    out = ops.dual_attention(res, x, *inputs[2:], backend="native")
    (grad_res,) = torch.autograd.grad(out, res, torch.randn_like(out))
    for t in (out, grad_res):
        assert t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_batch(backend):
    inputs = [t.requires_grad_(True) for t in make_inputs((0, 8, 4, 4), 4)]
    out = ops.dual_attention(*inputs, backend=backend)
    assert out.shape == (0, 8, 4, 4)
    out.sum().backward()
    assert all(t.grad is not None and not t.grad.any() for t in inputs[2:])


@pytest.mark.parametrize("backend", ["reference", *BACKENDS])
def test_bad_input_names_the_argument(backend):
    res, x, sa, w1, b1, w2, b2, pw, pb = make_inputs((1, 8, 4, 4), 4)

    def call(**changed):
        args = dict(res=res, x=x, sa_weight=sa, ca_w1=w1, ca_b1=b1, ca_w2=w2, ca_b2=b2, proj_w=pw, proj_b=pb)
        args.update(changed)
        return ops.dual_attention(**args, backend=backend)

    cases = [
        (dict(res=res[0]), ValueError, "res must have shape"),
        (dict(res=res.int()), TypeError, "res must have a floating"),
        (dict(x=x[:, :4]), ValueError, "x must have res's shape"),
        (dict(x=x.double()), ValueError, "x must have res's shape .* dtype"),
        (dict(sa_weight=sa[:, :, :2]), ValueError, r"sa_weight must have shape \(1, 2, 3, 3\)"),
        (dict(ca_w1=w1[:, :4]), ValueError, r"ca_w1 must have shape \(2, 8, 1, 1\)"),
        (dict(ca_w2=w2[:4]), ValueError, r"ca_w2 must have shape \(8, 2, 1, 1\)"),
        (dict(proj_w=pw[:, :8]), ValueError, r"proj_w must have shape \(8, 16, 1, 1\)"),
        (dict(proj_b=pb.to("meta")), ValueError, "proj_b must be on res's device"),
        (dict(ca_b2=[1.0]), TypeError, "ca_b2 must be a torch.Tensor"),
        (dict(res=res[:, :, :0], x=x[:, :, :0]), ValueError, "at least one channel and one pixel"),
    ]
    for changed, error, message in cases:
        with pytest.raises(error, match=message):
            call(**changed)
