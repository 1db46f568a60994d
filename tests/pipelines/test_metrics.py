"""PSNR and SSIM against scikit-image, per image of a batch."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cycleisp_fast.pipelines.metrics import mean_finite, psnr, ssim


def skimage_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float) -> list[float]:
    return [
        structural_similarity(
            a.double().numpy(),
            b.double().numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=data_range,
            channel_axis=0,
        )
        for a, b in zip(x, y)
    ]


def skimage_psnr(x: torch.Tensor, y: torch.Tensor, data_range: float) -> list[float]:
    return [
        peak_signal_noise_ratio(a.double().numpy(), b.double().numpy(), data_range=data_range) for a, b in zip(x, y)
    ]


def structured_pair(n: int, channels: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean images with edges and gradients, and noisy, blurred, shifted versions of them."""
    rows = torch.linspace(0, 1, height).view(height, 1)
    cols = torch.linspace(0, 1, width).view(1, width)
    planes = [rows * cols, (rows > 0.4).float() * 0.7 + 0.1 + 0 * cols, torch.sin(8 * cols) * 0.4 + 0.5 + 0 * rows]
    base = torch.stack(planes)
    clean = torch.stack([base[:channels].roll(shifts=k, dims=-1) for k in range(n)])
    degraded = torch.nn.functional.avg_pool2d(clean, 3, stride=1, padding=1, count_include_pad=False)
    degraded = (degraded + 0.05 * torch.randn_like(degraded)).clamp(0, 1)
    return clean, degraded


@pytest.mark.parametrize("shape", [(3, 3, 24, 31), (2, 1, 11, 11), (1, 4, 40, 17)])
def test_psnr_and_ssim_match_skimage_on_random_images(shape):
    x = torch.rand(shape, dtype=torch.float64)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    torch.testing.assert_close(
        psnr(x, y), torch.tensor(skimage_psnr(x, y, 1.0), dtype=torch.float64), rtol=1e-9, atol=1e-9
    )
    torch.testing.assert_close(
        ssim(x, y), torch.tensor(skimage_ssim(x, y, 1.0), dtype=torch.float64), rtol=1e-7, atol=1e-7
    )


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_psnr_and_ssim_match_skimage_on_structured_float32_images(data_range):
    clean, degraded = structured_pair(3, 3, 32, 45)
    clean, degraded = clean * data_range, degraded * data_range
    for metric, reference in ((psnr, skimage_psnr), (ssim, skimage_ssim)):
        ours = metric(degraded, clean, data_range=data_range)
        assert ours.dtype == torch.float64 and ours.shape == (3,)
        torch.testing.assert_close(
            ours, torch.tensor(reference(degraded, clean, data_range), dtype=torch.float64), rtol=1e-6, atol=1e-6
        )


def test_identical_images_give_infinite_psnr_and_ssim_one():
    clean, degraded = structured_pair(2, 3, 16, 16)
    pair = torch.stack([clean[0], degraded[1]])
    reference = torch.stack([clean[0], clean[1]])
    values = psnr(pair, reference)
    assert math.isinf(values[0]) and values[0] > 0 and math.isfinite(values[1])
    assert float(ssim(pair, reference)[0]) == pytest.approx(1.0, abs=1e-12)
    assert mean_finite(values) == pytest.approx(float(values[1]))
    assert math.isnan(mean_finite(torch.tensor([math.inf])))


def test_ssim_of_anticorrelated_images_is_negative():
    x = torch.rand(1, 1, 20, 20, dtype=torch.float64)
    value = float(ssim(x, 1 - x)[0])
    assert value < 0
    assert value == pytest.approx(skimage_ssim(x, 1 - x, 1.0)[0], abs=1e-9)


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_bad_arguments_are_reported(metric):
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        metric(x, x[..., :15])
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        metric(x[0], x[0])
    with pytest.raises(TypeError, match="torch.Tensor"):
        metric(np.zeros((1, 3, 16, 16)), x)
    with pytest.raises(ValueError, match="data_range"):
        metric(x, x, data_range=0)
    with pytest.raises(TypeError, match="floating"):
        metric(x.to(torch.uint8), x.to(torch.uint8))


def test_ssim_needs_a_whole_window():
    x = torch.rand(1, 3, 10, 40)
    with pytest.raises(ValueError, match="11x11"):
        ssim(x, x)
