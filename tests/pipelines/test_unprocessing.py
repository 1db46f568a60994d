"""The analytic camera pipeline (Brooks et al.) against an independent per-image numpy rendering of the paper's
formulas, and its properties: sampled camera ranges, reproducibility, round trip."""

import numpy as np
import pytest
import torch

from cycleisp_fast.color import normalised_rgb_to_camera
from cycleisp_fast.pipelines import unprocessing as isp


def _unprocess_numpy(image_hwc, rgb2cam, rgb_gain, red_gain, blue_gain):
    """Brooks' unprocess on one HxWx3 float64 image, step by step."""
    x = np.clip(image_hwc, 0, 1)
    x = 0.5 - np.sin(np.arcsin(1 - 2 * x) / 3)
    x = np.maximum(x, 1e-8) ** 2.2
    x = x @ rgb2cam.T
    gains = np.array([1 / red_gain, 1.0, 1 / blue_gain]) / rgb_gain
    grey = x.mean(axis=-1, keepdims=True)
    mask = (np.maximum(grey - 0.9, 0) / 0.1) ** 2
    x = np.clip(x * np.maximum(mask + (1 - mask) * gains, gains), 0, 1)
    return np.stack([x[0::2, 0::2, 0], x[0::2, 1::2, 1], x[1::2, 0::2, 1], x[1::2, 1::2, 2]])


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_unprocess_matches_the_formulas(backend):
    images = torch.rand(2, 3, 6, 8, dtype=torch.float64)
    images[1, :, :2, :2] = 0.99  # a highlight
    params = isp.random_camera_params(2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    out = isp.unprocess(images, params, backend=backend)
    for b in range(2):
        expected = _unprocess_numpy(
            images[b].permute(1, 2, 0).numpy(),
            params.rgb2cam[b].numpy(),
            params.rgb_gain[b].item(),
            params.red_gain[b].item(),
            params.blue_gain[b].item(),
        )
        np.testing.assert_allclose(out[b].numpy(), expected, rtol=1e-10, atol=1e-12)


def test_camera_params_follow_brooks():
    params = isp.random_camera_params(4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(params.rgb2cam.sum(-1), torch.ones(4000, 3, dtype=torch.float64))
    torch.testing.assert_close(params.rgb2cam @ params.cam2rgb, torch.eye(3, dtype=torch.float64).expand(4000, 3, 3))
    assert 1.9 <= params.red_gain.min() and params.red_gain.max() <= 2.4
    assert 1.5 <= params.blue_gain.min() and params.blue_gain.max() <= 1.9
    # 1 / rgb_gain ~ N(0.8, 0.1): 4000 draws put the sample mean within 5 sigma / sqrt(n) of 0.8
    inverse = 1 / params.rgb_gain
    assert abs(inverse.mean().item() - 0.8) < 5 * 0.1 / 4000**0.5
    assert abs(inverse.std().item() - 0.1) < 0.01
    # each matrix is a convex combination of the four cameras: its rows lie between their extremes
    cameras = normalised_rgb_to_camera(isp.XYZ_TO_CAMERA)
    xyz = params.rgb2cam  # rows normalised after mixing, so compare the normalised mixtures' range loosely
    assert torch.all(xyz.diagonal(dim1=1, dim2=2) > 0)
    assert cameras.shape == (4, 3, 3)


def test_camera_params_reproducible_and_device_independent_dtype():
    a = isp.random_camera_params(3, generator=torch.Generator().manual_seed(5))
    b = isp.random_camera_params(3, generator=torch.Generator().manual_seed(5))
    c = isp.random_camera_params(3, generator=torch.Generator().manual_seed(6))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.red_gain, c.red_gain)
    assert a.rgb2cam.dtype == torch.float32


def test_process_inverts_unprocess_on_smooth_images():
    # a constant image survives the round trip exactly (the bilinear demosaic reproduces constants), and a
    # smooth one up to the demosaic's interpolation error
    params = isp.random_camera_params(2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    constant = torch.tensor([0.3, 0.5, 0.4], dtype=torch.float64)[None, :, None, None].expand(2, 3, 8, 8)
    raw = isp.unprocess(constant, params)
    back = isp.process(raw, params.red_gain, params.blue_gain, params.cam2rgb, rgb_gain=params.rgb_gain, tone_map=True)
    torch.testing.assert_close(back, constant)
    ys, xs = torch.meshgrid(
        torch.linspace(0.2, 0.6, 32, dtype=torch.float64),
        torch.linspace(0.1, 0.5, 32, dtype=torch.float64),
        indexing="ij",
    )
    smooth = torch.stack([ys, xs, (ys + xs) / 2])[None].expand(2, 3, 32, 32)
    back = isp.process(
        isp.unprocess(smooth, params),
        params.red_gain,
        params.blue_gain,
        params.cam2rgb,
        rgb_gain=params.rgb_gain,
        tone_map=True,
    )
    assert (back - smooth)[..., 2:-2, 2:-2].abs().max() < 5e-3


def test_process_defaults_are_brooks_process():
    # without rgb_gain and tone map: gains, clip, demosaic, matrix, clip, gamma
    raw = torch.rand(1, 4, 4, 4, dtype=torch.float64)
    m = torch.eye(3, dtype=torch.float64)[None]
    out = isp.process(raw, 2.0, 1.5, m)
    from cycleisp_fast.reference.camera import demosaic_bilinear

    gains = torch.tensor([2.0, 1.0, 1.0, 1.5], dtype=torch.float64)[None, :, None, None]
    expected = demosaic_bilinear((raw * gains).clamp(0, 1)).clamp(0, 1).clamp_min(1e-8) ** (1 / 2.2)
    torch.testing.assert_close(out, expected)


def test_fused_and_reference_pipelines_agree():
    images = torch.rand(2, 3, 16, 12)
    params = isp.random_camera_params(2, generator=torch.Generator().manual_seed(2))
    ref = isp.unprocess(images, params, backend="reference")
    torch.testing.assert_close(isp.unprocess(images, params), ref)
    args = (params.red_gain, params.blue_gain, params.cam2rgb)
    torch.testing.assert_close(
        isp.process(ref, *args, tone_map=True), isp.process(ref, *args, tone_map=True, backend="reference")
    )


def test_bad_input():
    params = isp.random_camera_params(2)
    with pytest.raises(ValueError, match="even"):
        isp.unprocess(torch.rand(2, 3, 5, 4), params)
    with pytest.raises(ValueError, match="params.rgb2cam"):
        isp.unprocess(torch.rand(3, 3, 4, 4), params)
    with pytest.raises(TypeError, match="CameraParams"):
        isp.unprocess(torch.rand(2, 3, 4, 4), (1, 2))
    with pytest.raises(ValueError, match="red_gain"):
        isp.process(torch.rand(2, 4, 2, 2), torch.ones(3), 1.0, torch.eye(3))
    with pytest.raises(ValueError, match="n must be a positive int"):
        isp.random_camera_params(0)
