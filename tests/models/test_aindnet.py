"""AINDNet: parameter counts against the spec, the forward against the official computation written out
independently (tests/official_aindnet.py), both options where paper and code disagree, padding of any size,
the fused backends against the reference, the losses by hand, the transfer-learning helpers, bad input and
torch.compile.

Tolerances: the reference backend runs the official operations in the official order, but the write-up's
instance norm and resize are written differently (explicit mean/variance, weighted sums instead of lerp), so
float64 comparisons use assert_close's float64 defaults. Fused vs reference runs in float64 too.
"""

import pytest
import torch
import torch.nn.functional as F

from cycleisp_fast.models import (AINDNet, NoiseEstimator, aindnet_real_loss, aindnet_synthetic_loss,
                                  asymmetric_noise_loss, multiscale_asymmetric_loss, trainable_parameters,
                                  transfer_rt, transfer_tf)
from cycleisp_fast.models.aindnet import ResBlock, tf_legacy_resize_bilinear
from cycleisp_fast.nn import AIN, AINResBlock
from conftest import fused_backends
from official_aindnet import plain_aindnet, plain_estimator, tf_legacy_resize_bilinear as plain_resize

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
@pytest.mark.parametrize("noise_resize", ["subsample", "avgpool"])
def test_forward_equals_the_official_computation(coarse_scale, noise_resize):
    model = randomized(AINDNet(coarse_scale, noise_resize, backend="reference").double())
    noisy = torch.rand(2, 3, 16, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    denoised, noise_map, coarse = model(noisy, return_noise_map=True)
    expected, expected_map, expected_coarse = plain_aindnet(model, noisy)
    assert coarse.shape == (2, 3, 16 // coarse_scale, 24 // coarse_scale)
    torch.testing.assert_close(coarse, expected_coarse)
    torch.testing.assert_close(noise_map, expected_map)
    torch.testing.assert_close(denoised, expected)
    assert (noise_map >= 0).all() and noise_map.std() > 0 and (denoised - noisy).abs().max() > 1e-3


def test_estimator_equals_the_official_computation_and_upsample_option():
    estimator = randomized(NoiseEstimator().double(), std=0.2)
    noisy = torch.rand(1, 3, 24, 32, dtype=torch.float64)
    noise_map, coarse = estimator(noisy, return_coarse=True)
    expected_map, expected_coarse = plain_estimator(estimator, noisy)
    torch.testing.assert_close(noise_map, expected_map)
    torch.testing.assert_close(coarse, expected_coarse)
    torch.testing.assert_close(estimator(noisy), noise_map)
    bilinear = NoiseEstimator(upsample="bilinear").double()
    bilinear.load_state_dict(estimator.state_dict())
    upsampled = F.interpolate(coarse, size=(24, 32), mode="bilinear", align_corners=False)
    refined = 0.2 * F.relu(bilinear.refine[1][0](F.relu(bilinear.refine[0][0](upsampled))))
    torch.testing.assert_close(bilinear(noisy), 0.8 * upsampled + refined)
    assert not torch.allclose(bilinear(noisy), noise_map)  # the two resizes differ


def test_tf_legacy_resize_by_hand_and_as_subsampling():
    image = torch.tensor([[[[0.0, 4.0], [8.0, 12.0]]]])
    # src = dst / 2: rows 0, 0.5, 1, 1.5 -> 1 (clamped); the same along columns
    expected_row = torch.tensor([0.0, 2.0, 4.0, 4.0])
    expected = torch.stack([expected_row, expected_row + 4, expected_row + 8, expected_row + 8])
    torch.testing.assert_close(tf_legacy_resize_bilinear(image, (4, 4))[0, 0], expected)
    big = torch.rand(2, 3, 16, 24, dtype=torch.float64)
    for factor in (2, 4, 8):
        torch.testing.assert_close(tf_legacy_resize_bilinear(big, (16 // factor, 24 // factor)),
                                   big[..., ::factor, ::factor])
    small = torch.rand(1, 3, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(tf_legacy_resize_bilinear(small, (24, 40)), plain_resize(small, (24, 40)))


@pytest.mark.parametrize("size", [(13, 21), (1, 1), (8, 9)])
def test_any_size_pads_with_replicated_edges_and_crops(size):
    model = randomized(AINDNet(backend="reference").double())
    noisy = torch.rand(1, 3, *size, dtype=torch.float64)
    denoised, noise_map, _ = model(noisy, return_noise_map=True)
    assert denoised.shape == noisy.shape and noise_map.shape == noisy.shape
    padded_size = [-(-extent // 8) * 8 for extent in size]
    padded = F.pad(noisy, (0, padded_size[1] - size[1], 0, padded_size[0] - size[0]), mode="replicate")
    expected, expected_map, _ = plain_aindnet(model, padded)
    torch.testing.assert_close(denoised, expected[..., :size[0], :size[1]])
    torch.testing.assert_close(noise_map, expected_map[..., :size[0], :size[1]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_backends_match_the_reference(backend):
    reference = randomized(AINDNet(backend="reference").double())
    fused = AINDNet(backend=backend).double()
    fused.load_state_dict(reference.state_dict())
    noisy = torch.rand(1, 3, 8, 8, dtype=torch.float64)
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
    torch.testing.assert_close(aindnet_synthetic_loss(denoised, clean, noise_map, coarse, sigma),
                               torch.tensor(0.5 + 0.05 * expected))
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
    expected = {name for name, _ in model.named_parameters()
                if ".ain_1." in name or ".ain_2." in name or name.startswith(("fcn_avg.", "conv6."))}
    assert with_grad == expected
    assert sum(p.numel() for name, p in model.named_parameters() if name in with_grad) == 5_188_270
    assert transfer_rt(model) == 13_764_014
    model.zero_grad(set_to_none=True)
    aindnet_real_loss(model(torch.rand(1, 3, 16, 16)), torch.rand(1, 3, 16, 16)).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_initialisation_as_the_official_code():
    model = AINDNet()
    assert model.up4.bias is None and model.up4.weight.abs().max() <= 0.04
    assert 0.015 < model.up4.weight.std() < 0.021
    assert isinstance(model.skip4, ResBlock) and model.conv6.kernel_size == (1, 1)
    assert not model.conv6.bias.any()


def test_bad_input_names_the_argument():
    model = AINDNet(backend="reference")
    cases = [
        (lambda: model(torch.rand(1, 4, 8, 8)), ValueError, "noisy must have 3 channel"),
        (lambda: model(torch.rand(3, 8, 8)), ValueError, "noisy must have shape"),
        (lambda: model(torch.zeros(1, 3, 8, 8, dtype=torch.int32)), TypeError, "noisy must have a floating"),
        (lambda: model(torch.rand(1, 3, 0, 8)), ValueError, "noisy must have a nonzero"),
        (lambda: NoiseEstimator()(torch.rand(1, 3, 12, 16)), ValueError, "multiples of coarse_scale=8"),
        (lambda: NoiseEstimator(coarse_scale=2), ValueError, "coarse_scale must be one of"),
        (lambda: AINDNet(noise_resize="bicubic"), ValueError, "noise_resize must be one of"),
        (lambda: NoiseEstimator(upsample="nearest"), ValueError, "upsample must be one of"),
        (lambda: AINDNet(backend="gpu"), ValueError, "backend must be"),
        (lambda: transfer_tf(torch.nn.Linear(2, 2)), TypeError, "model must be an AINDNet"),
        (lambda: asymmetric_noise_loss(torch.rand(2), torch.rand(3)), ValueError, "asymmetric_noise_loss"),
        (lambda: multiscale_asymmetric_loss(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 3, 3), torch.rand(1, 3, 8, 8)),
         ValueError, "coarse must be target_sigma"),
    ]
    for thunk, error, message in cases:
        with pytest.raises(error, match=message):
            thunk()


def test_compile_fullgraph_matches_eager():
    estimator = randomized(NoiseEstimator(), std=0.2)
    noisy = torch.rand(1, 3, 16, 24)
    compiled = torch.compile(estimator, fullgraph=True)
    torch.testing.assert_close(compiled(noisy), estimator(noisy), rtol=1e-5, atol=1e-6)
