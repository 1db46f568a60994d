"""``eval`` on SIDD's validation blocks (sidd-val-srgb, sidd-val-raw): one item per block, PSNR on float or
uint8-rounded outputs, SSIM from scikit-image or as MATLAB's ``ssim`` computes it (checked against a scipy
re-implementation of MATLAB's algorithm), and the layouts' errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
from matlab_files import write_sidd_blocks
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from test_denoise import tiny_checkpoint
from test_denoise_benchmarks import raw_reference
from test_eval import read_rows, run_eval, table_row

from cycleisp_fast.data.images import quantize
from cycleisp_fast.data.raw import pack_rggb
from cycleisp_fast.noise.estimation import estimate_raw_noise

RNG = np.random.default_rng(11)


def matlab_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MATLAB's ssim(A, ref) on an H x W[ x 3] array in [0, 1] (its ssim.m): 11-tap Gaussian (sigma 1.5) along
    every axis, the channel axis included, replicated borders, population moments, mean over the whole map."""
    taps = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    taps /= taps.sum()

    def blur(volume):
        for axis in range(volume.ndim):
            volume = scipy.ndimage.correlate1d(volume, taps, axis=axis, mode="nearest")
        return volume

    mean_a, mean_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mean_a**2, blur(b * b) - mean_b**2, blur(a * b) - mean_a * mean_b
    c1, c2 = 0.01**2, 0.03**2
    return float(
        np.mean((2 * mean_a * mean_b + c1) * (2 * cov + c2) / ((mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)))
    )


@pytest.fixture
def srgb_blocks(tmp_path):
    """2 images x 3 blocks of 16x16: clean gradients, noisy = clean + noise, both uint8, in the validation files."""
    rows, cols = np.indices((16, 16))
    clean = np.stack([40 + 6 * rows + 3 * cols + 20 * c for c in range(3)], axis=-1)
    clean = np.clip(clean[None, None] + RNG.integers(0, 30, (2, 3, 1, 1, 3)), 0, 255).astype(np.uint8)
    noisy = np.clip(clean + RNG.normal(0, 12, clean.shape), 0, 255).round().astype(np.uint8)
    write_sidd_blocks(tmp_path / "val" / "ValidationNoisyBlocksSrgb.mat", "ValidationNoisyBlocksSrgb", noisy)
    write_sidd_blocks(tmp_path / "val" / "ValidationGtBlocksSrgb.mat", "ValidationGtBlocksSrgb", clean)
    return tmp_path / "val", noisy, clean


def test_noisy_baseline_psnr_and_ssim_of_each_block(tmp_path, srgb_blocks, capsys):
    root, noisy, clean = srgb_blocks
    assert run_eval([root, "--csv", tmp_path / "s.csv"]) == 0  # the layout is detected
    _, rows = read_rows(tmp_path / "s.csv")
    assert [row["image"] for row in rows] == ["0001_01", "0001_02", "0001_03", "0002_01", "0002_02", "0002_03"]
    for row in rows:
        image, block = int(row["image"][:4]) - 1, int(row["image"][5:]) - 1
        gt, test = clean[image, block], noisy[image, block]
        assert float(row["psnr"]) == pytest.approx(peak_signal_noise_ratio(gt, test, data_range=255), abs=1e-6)
        expected_ssim = structural_similarity(
            gt / 255,
            test / 255,
            data_range=1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            channel_axis=2,
        )
        assert float(row["ssim"]) == pytest.approx(expected_ssim, abs=1e-7)
    out = capsys.readouterr().out
    assert "(sidd-val-srgb): 6 pair(s); PSNR and SSIM (skimage) of the float outputs" in out
    assert table_row(out, "noisy")[2] == f"{np.mean([float(row['psnr']) for row in rows]):.2f}"


def test_matlab_ssim_and_uint8_outputs(tmp_path, srgb_blocks):
    root, noisy, clean = srgb_blocks
    model = tiny_checkpoint(tmp_path / "s.pt")
    assert (
        run_eval(
            [
                root,
                "--layout",
                "sidd-val-srgb",
                "--model",
                f"cycleisp-srgb={tmp_path / 's.pt'}",
                "--ssim",
                "matlab",
                "--output-dtype",
                "uint8",
                "--csv",
                tmp_path / "s.csv",
            ]
        )
        == 0
    )
    _, rows = read_rows(tmp_path / "s.csv")
    for row in rows:
        image, block = int(row["image"][:4]) - 1, int(row["image"][5:]) - 1
        if row["model"] == "noisy":
            output = noisy[image, block]
        else:
            with torch.no_grad():
                denoised = model(torch.from_numpy(noisy[image, block].transpose(2, 0, 1)).float()[None] / 255)
            output = quantize(denoised[0].clamp(0, 1), 8)  # rounded to 8 bits, as a submission holds it
        gt = clean[image, block]
        assert float(row["psnr"]) == pytest.approx(peak_signal_noise_ratio(gt, output, data_range=255), abs=1e-6)
        assert float(row["ssim"]) == pytest.approx(matlab_ssim(output / 255, gt / 255), abs=1e-7)


def test_raw_blocks_are_scored_as_stored_with_a_pooled_noise_estimate(tmp_path):
    model = tiny_checkpoint(tmp_path / "r.pt", "cycleisp-raw", raw=True)
    rows, cols = np.indices((40, 40)) / 40
    clean = np.broadcast_to(0.2 + 0.3 * (rows + cols), (2, 3, 40, 40)) + RNG.uniform(0, 0.1, (2, 3, 1, 1))
    noisy = np.clip(clean + RNG.standard_normal(clean.shape) * np.sqrt(2e-3 * clean + 1e-4), 0, 1)
    write_sidd_blocks(tmp_path / "val" / "ValidationNoisyBlocksRaw.mat", "ValidationNoisyBlocksRaw", noisy, v73=True)
    write_sidd_blocks(tmp_path / "val" / "ValidationGtBlocksRaw.mat", "ValidationGtBlocksRaw", clean, v73=True)
    assert (
        run_eval(
            [
                tmp_path / "val",
                "--model",
                f"cycleisp-raw={tmp_path / 'r.pt'}",
                "--pattern",
                "N6,S6",
                "--ssim",
                "matlab",
                "--csv",
                tmp_path / "s.csv",
            ]
        )
        == 0
    )
    _, scores = read_rows(tmp_path / "s.csv")
    for image, pattern in enumerate(["BGGR", "GRBG"]):
        levels = estimate_raw_noise(pack_rggb(torch.from_numpy(noisy[image]).float(), pattern), pooled=True)
        for block in range(3):
            gt, test = clean[image, block].astype(np.float32), noisy[image, block].astype(np.float32)
            denoised = raw_reference(model, test, pattern, float(levels.shot[0]), float(levels.read[0]))
            for row, output in zip(scores[(image * 3 + block) * 2 :][:2], [test, denoised]):
                assert float(row["psnr"]) == pytest.approx(peak_signal_noise_ratio(gt, output, data_range=1), abs=1e-4)
                assert float(row["ssim"]) == pytest.approx(matlab_ssim(output.astype(np.float64), gt), abs=1e-5)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_gt", "missing: {root}/ValidationGtBlocksSrgb.mat"),
        ("raw_without_pattern", "carry no Bayer pattern"),
        ("uint8_on_raw", "--output-dtype uint8 rounds sRGB outputs"),
        ("pattern_on_srgb", "--pattern applies to the sidd-raw and sidd-val-raw layouts, not to sidd-val-srgb"),
        (
            "bad_gt_dtype",
            "ValidationGtBlocksSrgb.mat: 'ValidationGtBlocksSrgb' must be (n_images, n_blocks, h, w, 3) "
            "uint8, got dtype float64",
        ),
    ],
)
def test_bad_validation_folders_exit_2(tmp_path, capsys, case, message):
    root = tmp_path / "val"
    kind = "Raw" if case in ("raw_without_pattern", "uint8_on_raw") else "Srgb"
    shape = (1, 2, 16, 16) if kind == "Raw" else (1, 2, 16, 16, 3)
    blocks = np.zeros(shape, np.float64 if kind == "Raw" else np.uint8)
    write_sidd_blocks(root / f"ValidationNoisyBlocks{kind}.mat", f"ValidationNoisyBlocks{kind}", blocks)
    if case != "missing_gt":
        write_sidd_blocks(
            root / f"ValidationGtBlocks{kind}.mat",
            f"ValidationGtBlocks{kind}",
            blocks.astype(np.float64) if case == "bad_gt_dtype" else blocks,
        )
    extra = {
        "uint8_on_raw": ["--output-dtype", "uint8", "--pattern", "RGGB"],
        "pattern_on_srgb": ["--pattern", "RGGB"],
    }.get(case, [])
    with pytest.raises(SystemExit) as caught:
        run_eval([root, *extra, "--csv", tmp_path / "s.csv"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert message.format(root=root) in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()
