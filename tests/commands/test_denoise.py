"""The denoiser registry and weight loading, tiled denoising, the RAW noise estimator, and ``denoise``."""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pytest
import torch
from dng_files import write_dng
from pidng.core import Tag

from cycleisp_fast.commands import denoise as denoise_command
from cycleisp_fast.data.images import read_image, write_image
from cycleisp_fast.data.raw import read_raw
from cycleisp_fast.models import DenoiseNet
from cycleisp_fast.noise.estimation import estimate_raw_noise
from cycleisp_fast.optimization import OptimizedModel
from cycleisp_fast.pipelines.denoisers import NoisyBaseline, denoise_raw, denoise_srgb, load_denoiser
from cycleisp_fast.pipelines.unprocessing import process

TINY = dict(n_feats=8, num_rrg=1, num_dab=1, reduction=4)
WHITE, BLACK = 4095, 256


def tiny_checkpoint(path, name: str = "cycleisp-srgb", *, raw: bool = False, seed: int = 0):
    """A trainer-style checkpoint of a tiny DenoiseNet at ``path``; returns the model."""
    torch.manual_seed(seed)
    model = DenoiseNet(raw=raw, **TINY).eval()
    torch.save({"model": name, "model_kwargs": dict(TINY), "state_dict": model.state_dict(), "step": 7}, path)
    return model


def scene(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """A smooth ``(3, H, W)`` image in [0.05, 0.95]: ramps and blocks, plus a little texture."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0, 1, height).view(1, height, 1)
    cols = torch.linspace(0, 1, width).view(1, 1, width)
    tint = torch.tensor([0.9, 0.7, 0.5]).view(3, 1, 1)
    image = 0.1 + 0.6 * tint * (0.5 * rows + 0.5 * cols) + 0.2 * ((rows * 4).floor() % 2)
    return (image + 0.02 * torch.rand(3, height, width, generator=generator)).clamp(0.05, 0.95)


def run_denoise(argv) -> int:
    parser = argparse.ArgumentParser()
    denoise_command.add_arguments(parser)
    args = parser.parse_args([str(arg) for arg in argv])
    return denoise_command.run(args, parser)


def as_levels(image: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Floats in [0, 1] -> the integer levels a PNG of ``bits`` stores (clamped, rounded to nearest)."""
    return torch.round(image.double().clamp(0, 1) * ((1 << bits) - 1))


def write_raw(path, mosaic: np.ndarray, *, noise_profile=None) -> str:
    """A DNG of the uint16 RGGB ``(H, W)`` mosaic, black level 256, white 4095, neutral white balance and an
    identity colour matrix unless told otherwise."""
    extra = [] if noise_profile is None else [(Tag.NoiseProfile, list(noise_profile))]
    identity = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    return write_dng(
        path.parent, mosaic, "RGGB", name=path.name, black=(BLACK,) * 4, color_matrix=identity, white=WHITE, extra=extra
    )


def noisy_mosaic(height: int, width: int, shot: float, read: float, seed: int = 0) -> np.ndarray:
    """An RGGB uint16 mosaic of ``scene`` with heteroscedastic noise of the given variances (normalised units)."""
    rgb = scene(height, width, seed)
    rows, cols = np.indices((height, width))
    channel = np.where((rows % 2 == 0) & (cols % 2 == 0), 0, np.where((rows % 2 == 1) & (cols % 2 == 1), 2, 1))
    clean = np.take_along_axis(rgb.numpy(), channel[None], 0)[0].astype(np.float64)
    noise = np.random.default_rng(seed).standard_normal(clean.shape) * np.sqrt(shot * clean + read)
    return np.clip(np.rint((clean + noise) * (WHITE - BLACK) + BLACK), 0, WHITE).astype(np.uint16)


# ------------------------------------------------------------------------------------------- loading


def test_trainer_checkpoint_builds_the_trained_size(tmp_path):
    original = tiny_checkpoint(tmp_path / "tiny.pt")
    model = load_denoiser("cycleisp-srgb", tmp_path / "tiny.pt")
    assert not model.training and isinstance(model, DenoiseNet) and not model.raw
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x), rtol=0, atol=0)


def test_official_state_dict_loads_key_for_key(tmp_path):
    torch.manual_seed(3)
    original = DenoiseNet(raw=True).eval()
    torch.save({"state_dict": {f"module.{k}": v for k, v in original.state_dict().items()}}, tmp_path / "raw.pth")
    model = load_denoiser("cycleisp-raw", tmp_path / "raw.pth")
    for key, value in original.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize(
    "case", ["srgb_weights_for_raw", "other_trained_model", "official_size_mismatch", "bad_model_kwargs"]
)
def test_weights_for_another_model_are_a_value_error_naming_file_and_model(tmp_path, case):
    path = tmp_path / "weights.pt"
    if case == "srgb_weights_for_raw":  # a trainer checkpoint claiming raw, holding sRGB weights
        model = DenoiseNet(raw=False, **TINY)
        torch.save({"model": "cycleisp-raw", "model_kwargs": TINY, "state_dict": model.state_dict()}, path)
        name, detail = "cycleisp-raw", "head.0.weight"
    elif case == "other_trained_model":
        tiny_checkpoint(path, "cycleisp-raw", raw=True)
        name, detail = "cycleisp-srgb", "trained for model 'cycleisp-raw'"
    elif case == "official_size_mismatch":  # a bare state dict of the tiny model: the default size expects 64
        torch.save(DenoiseNet(raw=False, **TINY).state_dict(), path)
        name, detail = "cycleisp-srgb", "wrong shapes"
    else:
        torch.save({"model": "cycleisp-srgb", "model_kwargs": {"n_layers": 3}, "state_dict": {}}, path)
        name, detail = "cycleisp-srgb", "n_layers"
    with pytest.raises(ValueError) as caught:
        load_denoiser(name, path)
    message = str(caught.value)
    assert str(path) in message and repr(name) in message and detail in message


def test_missing_unreadable_and_absent_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_denoiser("aindnet", tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_denoiser("cycleisp-srgb", tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="needs weights"):
        load_denoiser("cycleisp-srgb")
    with pytest.raises(ValueError, match="takes no weights"):
        load_denoiser("noisy", tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="name"):
        load_denoiser("dncnn")
    assert not load_denoiser("cycleisp-raw", allow_random=True).training
    assert isinstance(load_denoiser("noisy"), NoisyBaseline)


# ----------------------------------------------------------------------------------------- denoising


def test_denoise_srgb_and_raw_are_the_clamped_model_outputs(tmp_path):
    srgb_model = tiny_checkpoint(tmp_path / "s.pt")
    raw_model = tiny_checkpoint(tmp_path / "r.pt", "cycleisp-raw", raw=True)
    noisy = torch.rand(2, 3, 26, 30)
    packed = torch.rand(2, 4, 13, 15)
    shot, read = torch.tensor([1e-2, 2e-3]), 1e-4
    with torch.no_grad():
        torch.testing.assert_close(denoise_srgb(srgb_model, noisy), srgb_model(noisy).clamp(0, 1), rtol=0, atol=0)
        variance = shot.view(2, 1, 1, 1) * packed + read
        torch.testing.assert_close(
            denoise_raw(raw_model, packed, shot, read), raw_model(packed, variance).clamp(0, 1), rtol=1e-6, atol=1e-7
        )
    assert torch.equal(denoise_srgb(NoisyBaseline(), noisy * 2 - 0.5), (noisy * 2 - 0.5).clamp(0, 1))
    with pytest.raises(ValueError, match="sRGB"):
        denoise_raw(srgb_model, packed, shot, read)
    with pytest.raises(ValueError, match="RAW"):
        denoise_srgb(raw_model, noisy)
    with pytest.raises(ValueError, match="shot"):
        denoise_raw(raw_model, packed, torch.tensor([1e-2, -1.0]), read)


def test_aindnet_denoises_srgb_of_any_size():
    model = load_denoiser("aindnet", allow_random=True)
    noisy = torch.rand(1, 3, 21, 19)
    with torch.no_grad():
        assert torch.equal(denoise_srgb(model, noisy), model(noisy).clamp(0, 1))
    with pytest.raises(ValueError, match="RAW model"):
        denoise_raw(model, torch.rand(1, 4, 8, 8), 1e-3, 1e-5)


# ---------------------------------------------------------------------------------- noise estimation


def synthetic_packed(shot: float, read: float, size: int = 96, seed: int = 0, texture: float = 0.0):
    """Packed ``(1, 4, size, size)`` planes of a scene of ramps and horizontal and vertical stripes (and, with
    ``texture``, a diagonal grating on a quarter of the rows), plus heteroscedastic Gaussian noise of variance
    ``shot * x + read``, not clipped."""
    generator = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    base = 0.05 + 0.7 * (0.6 * cols + 0.4 * rows) / size + ((rows // 12) % 3) * 0.05 + ((cols // 16) % 2) * 0.08
    grating = texture * torch.sin((rows + cols).double() * 2.5) * ((rows // 16) % 4 == 0)
    clean = ((base + grating).clamp(0.02, 0.95) * torch.tensor([0.5, 1.0, 1.0, 0.7]).view(4, 1, 1))[None]
    noise = torch.randn(clean.shape, generator=generator, dtype=torch.float64) * (shot * clean + read).sqrt()
    return clean + noise


@pytest.mark.parametrize("shot, read", [(4e-3, 1e-3), (1e-3, 2e-4), (1e-2, 1e-4), (2e-4, 1e-5)])
def test_noise_estimate_recovers_known_levels(shot, read):
    for seed in range(3):
        estimate = estimate_raw_noise(synthetic_packed(shot, read, seed=seed).clamp(0, 1))
        assert estimate.shot.shape == (1,) and estimate.shot.dtype == torch.float64
        assert float(estimate.shot[0]) == pytest.approx(shot, rel=0.15)
        for level in (0.1, 0.5):  # the variance map the denoiser sees
            fitted = float(estimate.shot[0]) * level + float(estimate.read[0])
            assert fitted == pytest.approx(shot * level + read, rel=0.2)
        if read > 0.1 * shot:  # read noise that matters at these brightnesses is told apart from shot noise
            assert float(estimate.read[0]) == pytest.approx(read, rel=0.25)


def test_noise_estimate_of_a_batch_unclipped_and_with_texture():
    batch = torch.cat([synthetic_packed(4e-3, 1e-3, seed=5), synthetic_packed(1e-3, 2e-4, seed=6)])
    estimate = estimate_raw_noise(batch)  # unclipped: negative samples are noise and are used
    torch.testing.assert_close(estimate.shot, torch.tensor([4e-3, 1e-3], dtype=torch.float64), rtol=0.15, atol=0)
    textured = estimate_raw_noise(synthetic_packed(2e-3, 5e-4, seed=2, texture=0.2)[0])  # a (4, h, w) image
    assert float(textured.shot[0]) == pytest.approx(2e-3, rel=0.2)


def test_noise_estimate_rejects_unusable_input():
    with pytest.raises(ValueError, match="at least 10x10"):
        estimate_raw_noise(torch.rand(1, 4, 2, 40))
    with pytest.raises(ValueError, match="too few unclipped"):
        estimate_raw_noise(torch.ones(1, 4, 20, 20))
    with pytest.raises(ValueError, match="4 channel"):
        estimate_raw_noise(torch.rand(1, 3, 20, 20))


# ------------------------------------------------------------------------------------------- command


def test_denoise_images_and_folders_writes_the_quantised_model_output(tmp_path):
    model = tiny_checkpoint(tmp_path / "tiny.pt")
    inputs = tmp_path / "in"
    for index in range(2):
        write_image(inputs / f"img{index}.png", scene(48, 40, seed=index))
    write_image(tmp_path / "third.png", scene(40, 48, seed=7))
    assert (
        run_denoise(
            [
                inputs,
                tmp_path / "third.png",
                "-o",
                tmp_path / "out",
                "--model",
                "cycleisp-srgb",
                "--weights",
                tmp_path / "tiny.pt",
            ]
        )
        == 0
    )
    for noisy_path in [inputs / "img0.png", inputs / "img1.png", tmp_path / "third.png"]:
        output = tmp_path / "out" / noisy_path.name
        with torch.no_grad():
            expected = as_levels(model(read_image(noisy_path)[None])[0])
        assert torch.equal(as_levels(read_image(output)), expected), output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0.png", "img1.png", "third.png"]


def test_denoise_16_bit_output_with_tiles(tmp_path):
    model = tiny_checkpoint(tmp_path / "tiny.pt")
    write_image(tmp_path / "a.png", scene(48, 40))
    assert (
        run_denoise(
            [
                tmp_path / "a.png",
                "-o",
                tmp_path / "out",
                "--model",
                "cycleisp-srgb",
                "--weights",
                tmp_path / "tiny.pt",
                "--bits",
                "16",
                "--tile",
                "24",
                "--overlap",
                "4",
            ]
        )
        == 0
    )
    expected = denoise_srgb(model, read_image(tmp_path / "a.png")[None], tile=24, overlap=4)[0]
    assert torch.equal(as_levels(read_image(tmp_path / "out" / "a.png"), 16), as_levels(expected, 16))


def test_corrupt_input_is_reported_and_skipped_without_partial_output(tmp_path, capsys):
    tiny_checkpoint(tmp_path / "tiny.pt")
    write_image(tmp_path / "in" / "good.png", scene(48, 40))
    (tmp_path / "in" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    status = run_denoise(
        [tmp_path / "in", "-o", tmp_path / "out", "--model", "cycleisp-srgb", "--weights", tmp_path / "tiny.pt"]
    )
    assert status == 1
    assert "bad.png" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.png"]  # no bad.png, no temporary file


def test_a_bomb_and_a_memory_error_end_only_their_own_file(tmp_path, capsys, monkeypatch):
    """Errors of any kind in one file (a header over the pixel limit, MemoryError, an unexpected exception) are
    reported naming that file; the files after it are still denoised."""
    for name in ("a", "c", "d", "e"):
        write_image(tmp_path / "in" / f"{name}.png", scene(16, 16))
    (tmp_path / "in" / "b.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + b"\x00\x00\x00\rIHDR"
        + (100_000).to_bytes(4, "big") * 2
        + b"\x08\x02\x00\x00\x00"
        + b"\x00" * 4
    )
    denoise_file = denoise_command.denoise_file
    failures = {"c.png": MemoryError(), "d.png": ZeroDivisionError("a bug")}

    def failing(path, model, args):
        if path.name in failures:
            raise failures[path.name]
        return denoise_file(path, model, args)

    monkeypatch.setattr(denoise_command, "denoise_file", failing)
    assert run_denoise([tmp_path / "in", "-o", tmp_path / "out", "--model", "noisy"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'in' / 'b.png'}: 100000 x 100000 pixels" in err
    assert f"{tmp_path / 'in' / 'c.png'}: out of memory (MemoryError)" in err
    assert f"{tmp_path / 'in' / 'd.png'}: ZeroDivisionError: a bug" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "e.png"]


def test_an_existing_file_as_the_output_folder_is_named_before_any_input(tmp_path, capsys):
    write_image(tmp_path / "a.png", scene(16, 16))
    (tmp_path / "taken").write_text("")
    with pytest.raises(SystemExit) as exited:
        run_denoise([tmp_path / "a.png", "-o", tmp_path / "taken", "--model", "noisy"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"-o/--outdir: {tmp_path / 'taken'} is an existing file, not a folder" in err
    assert "a.png" not in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "cycleisp-raw", "--weights", "{raw}"], "sRGB images"),
        (["--model", "cycleisp-srgb", "--weights", "{raw}"], "raw.pt"),
        (["--model", "cycleisp-srgb"], "needs weights"),
        (["--model", "cycleisp-srgb", "--weights", "{srgb}", "--tile", "16", "--overlap", "8"], "--tile"),
        (["--model", "cycleisp-srgb", "--weights", "{srgb}", "--shot", "0.01"], "--read"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(tmp_path, capsys, extra, message):
    tiny_checkpoint(tmp_path / "srgb.pt")
    tiny_checkpoint(tmp_path / "raw.pt", "cycleisp-raw", raw=True)
    write_image(tmp_path / "a.png", scene(48, 40))
    extra = [arg.format(raw=tmp_path / "raw.pt", srgb=tmp_path / "srgb.pt") for arg in extra]
    with pytest.raises(SystemExit) as caught:
        run_denoise([tmp_path / "a.png", "-o", tmp_path / "out", *extra])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_inputs_that_would_share_an_output_are_refused(tmp_path, capsys):
    write_image(tmp_path / "a.png", scene(48, 40))
    write_image(tmp_path / "a.tif", scene(48, 40))
    with pytest.raises(SystemExit):
        run_denoise([tmp_path / "a.png", tmp_path / "a.tif", "-o", tmp_path / "out", "--model", "noisy"])
    assert "would both write" in capsys.readouterr().err


def expected_raw_outputs(model, dng_path, shot, read):
    raw = read_raw(dng_path)
    denoised = denoise_raw(model, raw.packed[None].clamp(0, 1), shot, read)
    developed = process(denoised, float(raw.white_balance[0]), float(raw.white_balance[2]), raw.cam_to_srgb)
    return denoised[0], developed[0]


@pytest.mark.parametrize("source", ["profile", "options", "estimate"])
def test_denoise_raw_writes_planes_and_a_developed_png(tmp_path, capsys, source):
    model = tiny_checkpoint(tmp_path / "raw.pt", "cycleisp-raw", raw=True)
    true_shot, true_read = 3e-3, 4e-4
    profile = (true_shot, true_read) if source == "profile" else None
    dng = write_raw(tmp_path / "shot", noisy_mosaic(96, 80, true_shot, true_read), noise_profile=profile)
    options = ["--shot", "0.002", "--read", "0.0001"] if source == "options" else []
    assert (
        run_denoise(
            [dng, "-o", tmp_path / "out", "--model", "cycleisp-raw", "--weights", tmp_path / "raw.pt", *options]
        )
        == 0
    )
    out = capsys.readouterr().out
    if source == "profile":
        shot, read = true_shot, true_read
        assert "NoiseProfile" in out
    elif source == "options":
        shot, read = 0.002, 0.0001
    else:
        shot, read = (float(level[0]) for level in estimate_raw_noise(read_raw(dng).packed))
        assert "estimated" in out
        assert shot == pytest.approx(true_shot, rel=0.3)  # the estimator on a real file's levels
    planes, developed = expected_raw_outputs(model, dng, shot, read)
    saved = np.load(tmp_path / "out" / "shot.npy")
    assert saved.dtype == np.float32 and saved.shape == (4, 48, 40)
    torch.testing.assert_close(torch.from_numpy(saved), planes, rtol=1e-6, atol=1e-6)
    assert torch.equal(as_levels(read_image(tmp_path / "out" / "shot.png")), as_levels(developed))


def test_raw_with_an_srgb_model_is_developed_then_denoised(tmp_path):
    model = tiny_checkpoint(tmp_path / "s.pt")
    dng = write_raw(tmp_path / "shot", noisy_mosaic(64, 48, 2e-3, 1e-4))
    assert run_denoise([dng, "-o", tmp_path / "out", "--model", "cycleisp-srgb", "--weights", tmp_path / "s.pt"]) == 0
    raw = read_raw(dng)
    developed = process(
        raw.packed[None].clamp(0, 1), float(raw.white_balance[0]), float(raw.white_balance[2]), raw.cam_to_srgb
    )
    with torch.no_grad():
        expected = model(developed).clamp(0, 1)[0]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["shot.png"]
    assert torch.equal(as_levels(read_image(tmp_path / "out" / "shot.png")), as_levels(expected))


# ------------------------------------------------------------------------------------------- --optimize

WIDE = dict(n_feats=16, num_rrg=1, num_dab=1, reduction=4)
"""16 features: the smallest DenoiseNet whose 3x3 convolutions optimize runs by Winograd."""


def wide_checkpoint(path, name: str = "cycleisp-srgb", *, raw: bool = False):
    torch.manual_seed(3)
    model = DenoiseNet(raw=raw, **WIDE).eval()
    torch.save({"model": name, "model_kwargs": dict(WIDE), "state_dict": model.state_dict(), "step": 1}, path)
    return model


def test_optimized_denoiser_denoises_as_the_model_within_float_rounding(tmp_path):
    wide_checkpoint(tmp_path / "srgb.pt")
    wide_checkpoint(tmp_path / "raw.pt", "cycleisp-raw", raw=True)
    plain, fast = (load_denoiser("cycleisp-srgb", tmp_path / "srgb.pt", optimized=flag) for flag in (False, True))
    assert isinstance(fast, OptimizedModel) and fast.winograd and not isinstance(plain, OptimizedModel)
    noisy = scene(40, 56)[None]
    expected = denoise_srgb(plain, noisy, tile=32, overlap=8)
    got = denoise_srgb(fast, noisy, tile=32, overlap=8)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-5)
    raw_plain, raw_fast = (load_denoiser("cycleisp-raw", tmp_path / "raw.pt", optimized=flag) for flag in (False, True))
    packed = scene(24, 32)[None, [0, 1, 1, 2]]
    torch.testing.assert_close(
        denoise_raw(raw_fast, packed, 2e-3, 1e-4), denoise_raw(raw_plain, packed, 2e-3, 1e-4), rtol=0, atol=2e-5
    )
    with pytest.raises(ValueError, match="denoise_srgb needs an sRGB model"):
        denoise_srgb(raw_fast, noisy)  # the optimized RAW model still says its domain


def test_optimized_precision_and_the_noisy_baseline(tmp_path):
    wide_checkpoint(tmp_path / "srgb.pt")
    with pytest.raises(ValueError, match="optimized=True"):
        load_denoiser("cycleisp-srgb", tmp_path / "srgb.pt", precision="bfloat16")
    with pytest.raises(ValueError, match="GPU only"):
        load_denoiser("cycleisp-srgb", tmp_path / "srgb.pt", optimized=True, precision="float16")
    assert isinstance(load_denoiser("noisy", optimized=True), NoisyBaseline)
    with pytest.raises(ValueError, match="precision"):
        load_denoiser("noisy", optimized=True, precision="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a CPU without bfloat16 arithmetic warns that it is slow
        half = load_denoiser("cycleisp-srgb", tmp_path / "srgb.pt", optimized=True, precision="bfloat16")
    noisy = scene(32, 32)[None]
    got = denoise_srgb(half, noisy)
    assert got.dtype == torch.float32  # the bfloat16 model is fed float32 and casts itself
    expected = denoise_srgb(load_denoiser("cycleisp-srgb", tmp_path / "srgb.pt"), noisy)
    assert (got - expected).abs().max() < 0.05


def test_denoise_optimize_writes_what_the_model_writes(tmp_path):
    wide_checkpoint(tmp_path / "srgb.pt")
    write_image(tmp_path / "a.png", scene(48, 40), bits=16)
    base = ["--model", "cycleisp-srgb", "--weights", tmp_path / "srgb.pt", "--bits", "16"]
    assert run_denoise([tmp_path / "a.png", "-o", tmp_path / "plain", *base]) == 0
    assert run_denoise([tmp_path / "a.png", "-o", tmp_path / "fast", *base, "--optimize"]) == 0
    plain = as_levels(read_image(tmp_path / "plain" / "a.png"), 16)
    fast = as_levels(read_image(tmp_path / "fast" / "a.png"), 16)
    assert (plain - fast).abs().max() <= 1  # float rounding moves a 16-bit level at most by one


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "cycleisp-srgb", "--weights", "{srgb}", "--precision", "bfloat16"], "with --optimize"),
        (["--model", "cycleisp-srgb", "--weights", "{srgb}", "--optimize", "--precision", "float16"], "GPU"),
        (["--onnx", "{srgb}", "--optimize"], "--onnx file runs as exported"),
    ],
)
def test_optimize_options_refused_with_a_clear_message(tmp_path, capsys, extra, message):
    wide_checkpoint(tmp_path / "srgb.pt")
    write_image(tmp_path / "a.png", scene(48, 40))
    extra = [arg.format(srgb=tmp_path / "srgb.pt") for arg in extra]
    with pytest.raises(SystemExit) as caught:
        run_denoise([tmp_path / "a.png", "-o", tmp_path / "out", *extra])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
