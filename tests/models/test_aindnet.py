"""AINDNet: parameter counts against the spec, the paper's options, the fused backends against the reference at
an odd size, the losses by hand, the initialisation layer by layer, the transfer-learning helpers, bad input and
torch.compile. The forward against the official TF graph, at every size, and the TF checkpoint:
tests/models/test_aindnet_official.py.

Fused vs reference runs in float64 (assert_close's float64 defaults).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import fused_backends

from cycleisp_fast.models import (
    AINDNet,
    NoiseEstimator,
    aindnet_real_loss,
    aindnet_synthetic_loss,
    asymmetric_noise_loss,
    multiscale_asymmetric_loss,
    trainable_parameters,
    transfer_rt,
    transfer_tf,
)
from cycleisp_fast.models.aindnet import ResBlock, estimator_pool
from cycleisp_fast.nn import AIN, AINResBlock

BACKENDS = fused_backends("ain_forward")


def count(module):
    return sum(p.numel() for p in module.parameters())


def randomized(model, std=0.05, seed=0):
    """The model with every parameter redrawn N(0, std^2): gamma and beta far from 0, every path active."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * std)
    return model


def test_parameter_counts_match_the_spec():
    model = AINDNet()
    ains = [m for m in model.modules() if isinstance(m, AIN)]
    assert count(model.fcn_avg) == 29_675
    assert count(model) - count(model.fcn_avg) == 13_734_339
    assert count(model) == 13_764_014
    assert len(ains) == 28 and len([m for m in model.modules() if isinstance(m, AINResBlock)]) == 14
    assert sum(count(m) for m in ains) == 5_158_400
    assert [m.channels for m in ains].count(64) == 8 and [m.channels for m in ains].count(128) == 10
    assert count(NoiseEstimator(coarse_scale=4)) == 29_675


@pytest.mark.parametrize("coarse_scale", [8, 4])
@pytest.mark.parametrize("noise_resize", ["tf_legacy", "avgpool"])
def test_paper_options_shapes_and_differences(coarse_scale, noise_resize):
    model = randomized(AINDNet(coarse_scale, noise_resize, backend="reference").double())
    noisy = torch.rand(2, 3, 21, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    denoised, noise_map, coarse = model(noisy, return_noise_map=True)
    coarse_size = (3, 4) if coarse_scale == 8 else (6, 8)  # ceil(ceil(21/4)/2), ceil(ceil(30/4)/2) or ceil(./4)
    assert coarse.shape == (2, 3, *coarse_size) and denoised.shape == noise_map.shape == noisy.shape
    assert (noise_map >= 0).all() and noise_map.std() > 0 and (denoised - noisy).abs().max() > 1e-3
    official = AINDNet(backend="reference").double()
    official.load_state_dict(model.state_dict())
    if (coarse_scale, noise_resize) != (8, "tf_legacy"):
        assert not torch.allclose(model(noisy), official(noisy))


def test_estimator_upsample_option():
    estimator = randomized(NoiseEstimator().double(), std=0.2)
    noisy = torch.rand(1, 3, 24, 37, dtype=torch.float64)
    noise_map, coarse = estimator(noisy, return_coarse=True)
    torch.testing.assert_close(estimator(noisy), noise_map)
    bilinear = NoiseEstimator(upsample="bilinear").double()
    bilinear.load_state_dict(estimator.state_dict())
    upsampled = F.interpolate(coarse, size=(24, 37), mode="bilinear", align_corners=False)
    refined = 0.2 * F.relu(bilinear.refine[1][0](F.relu(bilinear.refine[0][0](upsampled))))
    torch.testing.assert_close(bilinear(noisy), 0.8 * upsampled + refined)
    assert not torch.allclose(bilinear(noisy), noise_map)  # the two resizes differ


def test_estimator_pool_is_the_mean_at_multiples_and_same_windows_otherwise():
    sigma = torch.rand(2, 3, 16, 24, dtype=torch.float64)
    torch.testing.assert_close(estimator_pool(sigma, 8), F.avg_pool2d(sigma, 8))
    torch.testing.assert_close(estimator_pool(sigma, 4), F.avg_pool2d(sigma, 4))
    row = torch.arange(6.0, dtype=torch.float64).view(1, 1, 1, 6)  # 'SAME' 4x4: pad 1 before, 1 after
    torch.testing.assert_close(estimator_pool(row, 4), torch.tensor([[[[1.0, 4.0]]]], dtype=torch.float64))
    torch.testing.assert_close(estimator_pool(row, 8), torch.tensor([[[[2.5]]]], dtype=torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_backends_match_the_reference(backend):
    reference = randomized(AINDNet(backend="reference").double())
    fused = AINDNet(backend=backend).double()
    fused.load_state_dict(reference.state_dict())
    noisy = torch.rand(1, 3, 9, 7, dtype=torch.float64)  # odd: 'SAME' pools, cropped transposed convs, resizes
    torch.testing.assert_close(fused(noisy), reference(noisy))
    if backend == "triton":
        return  # the interpreter takes minutes for the 28 AINs' backward; the op tests cover Triton's gradients
    for model in (reference, fused):
        aindnet_real_loss(model(noisy), noisy.flip(-1)).backward()
    for (name, a), b in zip(fused.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=lambda m: f"{name}: {m}")


def test_asymmetric_losses_by_hand():
    estimate = torch.tensor([1.0, 3.0])
    target = torch.tensor([2.0, 1.0])
    # under-estimate by 1 weighs 0.75, over-estimate by 2 weighs 0.25: (0.75 + 0.25 * 4) / 2
    torch.testing.assert_close(asymmetric_noise_loss(estimate, target), torch.tensor(0.875))
    torch.testing.assert_close(asymmetric_noise_loss(estimate, target, alpha=0.5), torch.tensor(1.25))
    sigma = torch.arange(64.0).reshape(1, 1, 8, 8) / 64
    noise_map = sigma + 0.1
    coarse = torch.zeros(1, 1, 1, 1)  # under-estimates the 8x8 mean 31.5 / 64
    expected = 0.2 * 0.25 * 0.01 + 0.8 * 0.75 * (31.5 / 64) ** 2
    torch.testing.assert_close(multiscale_asymmetric_loss(noise_map, coarse, sigma), torch.tensor(expected))
    clean, denoised = torch.zeros(1, 1, 8, 8), torch.full((1, 1, 8, 8), 0.5)
    torch.testing.assert_close(
        aindnet_synthetic_loss(denoised, clean, noise_map, coarse, sigma), torch.tensor(0.5 + 0.05 * expected)
    )
    torch.testing.assert_close(aindnet_real_loss(denoised, clean), torch.tensor(0.5))


def test_synthetic_loss_trains_estimator_and_network():
    model = AINDNet(backend="reference")
    noisy = torch.rand(1, 3, 16, 16)
    denoised, noise_map, coarse = model(noisy, return_noise_map=True)
    aindnet_synthetic_loss(denoised, noisy * 0.9, noise_map, coarse, torch.full_like(noisy, 0.1)).backward()
    assert model.fcn_avg.features[0][0].weight.grad.abs().sum() > 0
    assert model.conv1_1[0].weight.grad.abs().sum() > 0


def test_transfer_tf_updates_only_ain_networks_estimator_and_last_conv():
    model = AINDNet(backend="reference")
    assert transfer_tf(model) == 5_188_270 == trainable_parameters(model)
    aindnet_real_loss(model(torch.rand(1, 3, 16, 16)), torch.rand(1, 3, 16, 16)).backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    expected = {
        name
        for name, _ in model.named_parameters()
        if ".ain_1." in name or ".ain_2." in name or name.startswith(("fcn_avg.", "conv6."))
    }
    assert with_grad == expected
    assert sum(p.numel() for name, p in model.named_parameters() if name in with_grad) == 5_188_270
    assert transfer_rt(model) == 13_764_014
    model.zero_grad(set_to_none=True)
    aindnet_real_loss(model(torch.rand(1, 3, 16, 16)), torch.rand(1, 3, 16, 16)).backward()
    assert all(p.grad is not None for p in model.parameters())


def slim_and_layers_convs(model):
    """The model's convs split as the official code builds them: slim.conv2d layers and tf.layers.conv2d ones."""
    layers = set()
    for module in model.modules():
        if isinstance(module, AINResBlock):
            layers |= {id(module.conv1), id(module.conv2)}
        elif isinstance(module, AIN):
            layers |= {id(module.conv1), id(module.conv_gamma), id(module.conv_beta)}
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    return [c for c in convs if id(c) not in layers], [c for c in convs if id(c) in layers]


def test_initialisation_layer_by_layer_as_the_official_code():
    model = AINDNet()
    slim, layers = slim_and_layers_convs(model)
    assert len(slim) == 15 and len(layers) == 14 * 8  # fcn_avg conv1-7, conv1_1..3_1, 2 skip ResBlocks, conv6
    for conv in slim:  # slim.conv2d: xavier_initializer() (uniform), zero biases
        fan_in, fan_out = conv.weight[0].numel(), conv.weight.shape[0] * conv.weight[0, 0].numel()
        limit = math.sqrt(6 / (fan_in + fan_out))
        weight = conv.weight.detach()
        assert weight.abs().max() <= limit and not conv.bias.any()
        if weight.numel() >= 2000:
            assert abs(weight.std() / (limit / math.sqrt(3)) - 1) < 0.1
    for conv in layers:  # tf.layers.conv2d + variance_scaling_initializer(0.02): truncated at 2 std
        std = math.sqrt(1.3 * 0.02 / conv.weight[0].numel())
        assert conv.weight.abs().max() <= 2 * std and not conv.bias.any()
    for up in (model.up4, model.up5):  # tf.truncated_normal(stddev=0.02)
        assert up.bias is None and up.weight.abs().max() <= 0.04
        assert 0.015 < up.weight.std() < 0.021
    assert isinstance(model.skip4, ResBlock) and model.conv6.kernel_size == (1, 1)


def test_bad_input_names_the_argument():
    model = AINDNet(backend="reference")
    cases = [
        (lambda: model(torch.rand(1, 4, 8, 8)), ValueError, "noisy must have 3 channel"),
        (lambda: model(torch.rand(3, 8, 8)), ValueError, "noisy must have shape"),
        (lambda: model(torch.zeros(1, 3, 8, 8, dtype=torch.int32)), TypeError, "noisy must have a floating"),
        (lambda: model(torch.rand(1, 3, 0, 8)), ValueError, "noisy must have a nonzero"),
        (lambda: NoiseEstimator()(torch.rand(1, 3, 0, 16)), ValueError, "noisy must have a nonzero"),
        (lambda: NoiseEstimator(coarse_scale=2), ValueError, "coarse_scale must be one of"),
        (lambda: AINDNet(noise_resize="bicubic"), ValueError, "noise_resize must be one of"),
        (lambda: NoiseEstimator(upsample="nearest"), ValueError, "upsample must be one of"),
        (lambda: AINDNet(backend="gpu"), ValueError, "backend must be"),
        (lambda: transfer_tf(torch.nn.Linear(2, 2)), TypeError, "model must be an AINDNet"),
        (lambda: asymmetric_noise_loss(torch.rand(2), torch.rand(3)), ValueError, "asymmetric_noise_loss"),
        (
            lambda: multiscale_asymmetric_loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 3, 3), torch.rand(1, 3, 8, 8)),
            ValueError,
            "coarse must be target_sigma",
        ),
    ]
    for thunk, error, message in cases:
        with pytest.raises(error, match=message):
            thunk()


def test_compile_fullgraph_matches_eager():
    estimator = randomized(NoiseEstimator(), std=0.2)
    noisy = torch.rand(1, 3, 16, 24)
    compiled = torch.compile(estimator, fullgraph=True)
    torch.testing.assert_close(compiled(noisy), estimator(noisy), rtol=1e-5, atol=1e-6)
