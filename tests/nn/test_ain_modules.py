"""AIN and AINResBlock modules: the official formula written out by hand, the TF1 initialisation, parameter
counts, the native backend against the reference, bad input, and torch.compile.

Tolerances: formula checks run in float64 on the reference backend and use assert_close's float64 defaults.
Native vs reference runs in float32 with ``rtol=atol=1e-4``: the backends sum the instance statistics in
different orders (about 1e-6 relative apart), and the weight gradients sum those differences over every pixel.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from official_aindnet import plain_ain, plain_resblock, tf_legacy_resize_bilinear

from cycleisp_fast import backend as backend_mod
from cycleisp_fast.nn import AIN, AINResBlock
from cycleisp_fast.nn.ain import RESIZE_MODES
from cycleisp_fast.ops.ain import OP_NAME

NATIVE_TOLERANCE = {"rtol": 1e-4, "atol": 1e-4}


def native_available() -> bool:
    try:
        return backend_mod.resolve(OP_NAME, "cpu", "native") == "native"
    except RuntimeError:
        return False


needs_native = pytest.mark.skipif(not native_available(), reason="native AIN kernels are not built")


def randomize_(module, std=0.2):
    """Replaces every parameter by N(0, std^2) draws, so gamma and beta are far from 0."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)
    return module


def inputs(channels, size, scale, n=2, dtype=torch.float64):
    """Features (n, channels, *size) with a non-zero mean, and a noise map in [0, 1) at scale x the size."""
    x = torch.randn(n, channels, *size, dtype=dtype) * 2 + 1
    noise_map = torch.rand(n, 3, size[0] * scale, size[1] * scale, dtype=dtype)
    return x, noise_map


@pytest.mark.parametrize("scale", [1, 2, 4])
@pytest.mark.parametrize("resize", RESIZE_MODES)
@pytest.mark.parametrize("negative_slope", [None, 0.02])
def test_ain_matches_the_official_formula(scale, resize, negative_slope):
    ain = randomize_(AIN(5, hidden=7, negative_slope=negative_slope, resize=resize, backend="reference")).double()
    x, noise_map = inputs(5, (6, 10), scale)
    torch.testing.assert_close(ain(x, noise_map), plain_ain(ain, x, noise_map))


def test_tf_legacy_is_strided_at_integer_factors_and_differs_from_avgpool():
    x, noise_map = inputs(4, (5, 7), 4)
    legacy, avgpool = (randomize_(AIN(4, resize=mode, backend="reference")).double() for mode in RESIZE_MODES)
    avgpool.load_state_dict(legacy.state_dict())
    torch.testing.assert_close(legacy(x, noise_map), legacy(x, noise_map[..., ::4, ::4].contiguous()))
    assert not torch.allclose(legacy(x, noise_map), avgpool(x, noise_map))
    assert AIN(4, resize="subsample").resize == "tf_legacy"  # the name checkpoints of earlier versions hold


def test_any_noise_map_size_tf_legacy_and_avgpool_at_ceil_factors():
    ain = randomize_(AIN(4, resize="tf_legacy", backend="reference")).double()
    x = torch.randn(1, 4, 16, 12, dtype=torch.float64)
    noise_map = torch.rand(1, 3, 61, 47, dtype=torch.float64)
    torch.testing.assert_close(ain(x, noise_map), plain_ain(ain, x, tf_legacy_resize_bilinear(noise_map, (16, 12))))
    pooled = AIN(4, resize="avgpool", backend="reference").double()
    pooled.load_state_dict(ain.state_dict())
    assert pooled(x, noise_map).shape == x.shape  # 61x47 -> 16x12 is the 'SAME' pooling by 4
    with pytest.raises(ValueError, match="pooled by one factor"):
        pooled(torch.randn(1, 4, 20, 12, dtype=torch.float64), noise_map)


def truncated_normal_std(std, bound=2.0):
    """The std of N(0, std^2) truncated to [-bound*std, bound*std]."""
    density = math.exp(-(bound**2) / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(bound / math.sqrt(2))
    return std * math.sqrt(1 - 2 * bound * density / mass)


def test_init_is_tf1_variance_scaling_and_ain_starts_as_instance_norm():
    block = AINResBlock(256)
    convs = [block.conv1, block.conv2] + [
        c for ain in (block.ain_1, block.ain_2) for c in (ain.conv1, ain.conv_gamma, ain.conv_beta)
    ]
    for conv in convs:
        fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        std = math.sqrt(1.3 * 0.02 / fan_in)
        weight = conv.weight.detach()
        assert weight.abs().max() <= 2 * std
        assert torch.count_nonzero(conv.bias) == 0
        if weight.numel() >= 100_000:  # enough draws for a 1 % estimate of the std
            assert weight.std().item() == pytest.approx(truncated_normal_std(std), rel=0.03)
            assert weight.mean().abs().item() < 0.01 * std
    x, noise_map = inputs(256, (16, 16), 1, dtype=torch.float32)
    expected = F.instance_norm(x, eps=1e-5)
    got = AIN(256, backend="reference")(x, noise_map)
    assert (got - expected).abs().mean() < 0.02  # gamma and beta are ~0.006 on average, ~0.04 at most
    torch.testing.assert_close(got, expected, rtol=0.05, atol=0.05)


def test_resblock_structure():
    block = AINResBlock(32, resize="avgpool", backend="reference")
    assert [name for name, _ in block.named_children()] == ["ain_1", "conv1", "ain_2", "conv2"]
    for ain in (block.ain_1, block.ain_2):
        assert [name for name, _ in ain.named_children()] == ["conv1", "conv_gamma", "conv_beta"]
        assert (ain.negative_slope, ain.eps, ain.resize, ain.backend) == (0.02, 1e-5, "avgpool", "reference")
        assert (ain.conv1.in_channels, ain.conv1.out_channels, ain.conv1.kernel_size) == (3, 64, (5, 5))
        for conv in (ain.conv_gamma, ain.conv_beta):
            assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (64, 32, (3, 3))
    for conv in (block.conv1, block.conv2):
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.padding) == (32, 32, (3, 3), (1, 1))


@pytest.mark.parametrize("scale", [1, 2])
def test_resblock_matches_the_official_formula(scale):
    block = randomize_(AINResBlock(6, hidden=5, backend="reference"), std=0.1).double()
    x, noise_map = inputs(6, (7, 9), scale)
    torch.testing.assert_close(block(x, noise_map), plain_resblock(block, x, noise_map))


def forward_and_grads(module, x, noise_map, grad_out):
    """The output, then the gradients of x, the noise map and every parameter, for ``grad_out``."""
    x, noise_map = x.clone().requires_grad_(), noise_map.clone().requires_grad_()
    out = module(x, noise_map)
    return [out.detach(), *torch.autograd.grad(out, [x, noise_map, *module.parameters()], grad_out)]


@needs_native
@pytest.mark.parametrize(
    "make_module, scale",
    [
        (lambda backend: AIN(8, hidden=16, backend=backend), 2),
        (lambda backend: AIN(8, hidden=16, negative_slope=0.02, resize="avgpool", backend=backend), 4),
        (lambda backend: AINResBlock(8, hidden=16, backend=backend), 1),
    ],
    ids=["ain-half", "ain-slope-avgpool-quarter", "resblock"],
)
def test_native_matches_reference_with_parameter_gradients(make_module, scale):
    reference = randomize_(make_module("reference"), std=0.1)
    native = make_module("native")
    native.load_state_dict(reference.state_dict())
    x, noise_map = inputs(8, (12, 20), scale, dtype=torch.float32)
    grad_out = torch.randn_like(x)
    for got, want in zip(
        forward_and_grads(native, x, noise_map, grad_out),
        forward_and_grads(reference, x, noise_map, grad_out),
        strict=True,
    ):
        torch.testing.assert_close(got, want, **NATIVE_TOLERANCE)


def ain_parameters(channels):
    """Parameters of one AIN conditioning net with AINDNet's hidden width 64 and 3-channel noise map."""
    return 5 * 5 * 3 * 64 + 64 + 2 * (3 * 3 * 64 * channels + channels)


def count(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("channels", [64, 128, 256])
def test_parameter_counts(channels):
    assert count(AIN(channels)) == ain_parameters(channels)
    assert count(AINResBlock(channels)) == 2 * ain_parameters(channels) + 2 * (9 * channels * channels + channels)


def test_the_28_ain_nets_of_aindnet_total_5158400():
    assert 8 * count(AIN(64)) + 10 * count(AIN(128)) + 10 * count(AIN(256)) == 5_158_400


@pytest.mark.parametrize(
    "x_shape, noise_shape, argument",
    [
        ((1, 4, 8, 8), (1, 1, 8, 8), "noise_map"),  # wrong noise-map channels
        ((1, 4, 8, 8), (2, 3, 8, 8), "noise_map"),  # batch mismatch
        ((1, 4, 8, 8), (3, 8, 8), "noise_map"),  # not 4-D
        ((1, 5, 8, 8), (1, 3, 8, 8), "x"),  # wrong feature channels
    ],
)
def test_bad_input_names_the_argument(x_shape, noise_shape, argument):
    with pytest.raises(ValueError, match=rf"^{argument} "):
        AIN(4, backend="reference")(torch.randn(x_shape), torch.rand(noise_shape))


@pytest.mark.parametrize("kwargs, argument", [({"resize": "bilinear"}, "resize"), ({"backend": "cuda"}, "backend")])
def test_bad_options_name_the_argument(kwargs, argument):
    for module in (AIN, AINResBlock):
        with pytest.raises(ValueError, match=rf"^{argument} "):
            module(4, **kwargs)


@needs_native
def test_compiled_resblock_matches_eager():
    block = randomize_(AINResBlock(4, hidden=8, backend="native"), std=0.1)
    x, noise_map = inputs(4, (8, 12), 2, dtype=torch.float32)
    grad_out = torch.randn_like(x)
    compiled = torch.compile(block, fullgraph=True, dynamic=False)
    for got, want in zip(
        forward_and_grads(compiled, x, noise_map, grad_out),
        forward_and_grads(block, x, noise_map, grad_out),
        strict=True,
    ):
        torch.testing.assert_close(got, want, **NATIVE_TOLERANCE)
