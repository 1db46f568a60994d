"""``eval``: per-image PSNR/SSIM of the noisy baseline and of models, checked against scikit-image on the files."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cycleisp_fast.commands import evaluate
from cycleisp_fast.data.images import read_image, write_image
from cycleisp_fast.models import DenoiseNet

TINY = dict(n_feats=8, num_rrg=1, num_dab=1, reduction=4)


def tiny_checkpoint(path, name: str = "cycleisp-srgb", *, raw: bool = False, seed: int = 0) -> DenoiseNet:
    torch.manual_seed(seed)
    model = DenoiseNet(raw=raw, **TINY).eval()
    torch.save({"model": name, "model_kwargs": dict(TINY), "state_dict": model.state_dict()}, path)
    return model


def run_eval(argv) -> int:
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    args = parser.parse_args([str(arg) for arg in argv])
    return evaluate.run(args, parser)


def read_rows(path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def reference_scores(output: torch.Tensor, clean: torch.Tensor) -> tuple[float, float]:
    """scikit-image's PSNR and SSIM (Gaussian window, population covariance) of two ``(C, H, W)`` images."""
    a, b = output.double().numpy(), clean.double().numpy()
    return (
        peak_signal_noise_ratio(b, a, data_range=1.0),
        structural_similarity(
            b, a, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=0
        ),
    )


def table_row(out: str, label: str) -> list[str]:
    """The cells of the summary table's row for ``label``."""
    line = next(line for line in out.splitlines() if line.startswith(f"| {label} "))
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


@pytest.fixture
def pairs(tmp_path):
    """A folder-layout dataset of three 48x40 pairs (clean: smooth gradients; noisy: plus Gaussian noise)."""
    generator = torch.Generator().manual_seed(1)
    rows = torch.linspace(0, 1, 48).view(1, 48, 1)
    cols = torch.linspace(0, 1, 40).view(1, 1, 40)
    for index, name in enumerate(["a", "b", "c"]):
        clean = (0.2 + 0.5 * rows * cols + 0.1 * index + 0.1 * torch.rand(3, 48, 40, generator=generator)).clamp(0, 1)
        noisy = (clean + 0.08 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
        write_image(tmp_path / "data" / "clean" / f"{name}.png", clean)
        write_image(tmp_path / "data" / "noisy" / f"{name}.png", noisy)
    return tmp_path / "data"


def test_eval_scores_the_baseline_and_models_like_skimage(tmp_path, pairs, capsys):
    first = tiny_checkpoint(tmp_path / "first.pt", seed=0)
    second = tiny_checkpoint(tmp_path / "second.pt", seed=1)
    status = run_eval(
        [
            pairs,
            "--model",
            f"cycleisp-srgb={tmp_path / 'first.pt'}",
            "--model",
            f"cycleisp-srgb={tmp_path / 'second.pt'}",
            "--csv",
            tmp_path / "scores.csv",
        ]
    )
    assert status == 0
    columns, rows = read_rows(tmp_path / "scores.csv")
    assert columns == ["image", "model", "psnr", "ssim"]
    labels = ["noisy", "cycleisp-srgb=first.pt", "cycleisp-srgb=second.pt"]
    assert [(row["image"], row["model"]) for row in rows] == [(name, label) for name in "abc" for label in labels]
    by_model = {"noisy": None, labels[1]: first, labels[2]: second}
    for row in rows:
        clean = read_image(pairs / "clean" / f"{row['image']}.png")
        noisy = read_image(pairs / "noisy" / f"{row['image']}.png")
        model = by_model[row["model"]]
        with torch.no_grad():
            output = noisy if model is None else model(noisy[None])[0].clamp(0, 1)
        expected_psnr, expected_ssim = reference_scores(output, clean)
        assert float(row["psnr"]) == pytest.approx(expected_psnr, abs=1e-6)
        assert float(row["ssim"]) == pytest.approx(expected_ssim, abs=1e-6)
    out = capsys.readouterr().out
    for label in labels:
        mean_psnr = np.mean([float(row["psnr"]) for row in rows if row["model"] == label])
        mean_ssim = np.mean([float(row["ssim"]) for row in rows if row["model"] == label])
        assert table_row(out, label) == [label, "3", f"{mean_psnr:.2f}", f"{mean_ssim:.4f}"]


def test_optimize_scores_as_the_model_within_float_rounding(tmp_path, pairs):
    """--optimize: the same table within float rounding (a 16-feature model, whose convolutions go by Winograd)."""
    torch.manual_seed(2)
    kwargs = dict(n_feats=16, num_rrg=1, num_dab=1, reduction=4)
    model = DenoiseNet(raw=False, **kwargs).eval()
    torch.save({"model": "cycleisp-srgb", "model_kwargs": kwargs, "state_dict": model.state_dict()}, tmp_path / "w.pt")
    spec = ["--model", f"cycleisp-srgb={tmp_path / 'w.pt'}"]
    assert run_eval([pairs, *spec, "--csv", tmp_path / "plain.csv"]) == 0
    assert run_eval([pairs, *spec, "--optimize", "--csv", tmp_path / "fast.csv"]) == 0
    (_, plain), (_, fast) = read_rows(tmp_path / "plain.csv"), read_rows(tmp_path / "fast.csv")
    assert [(row["image"], row["model"]) for row in fast] == [(row["image"], row["model"]) for row in plain]
    for a, b in zip(plain, fast):
        assert float(b["psnr"]) == pytest.approx(float(a["psnr"]), abs=1e-4)
        assert float(b["ssim"]) == pytest.approx(float(a["ssim"]), abs=1e-5)


def test_limit_and_identical_images(tmp_path, pairs, capsys):
    write_image(pairs / "noisy" / "a.png", read_image(pairs / "clean" / "a.png"))  # a perfect "noisy" image
    assert run_eval([pairs, "--layout", "folder", "--limit", "2", "--csv", tmp_path / "s.csv"]) == 0
    _, rows = read_rows(tmp_path / "s.csv")
    assert [(row["image"], row["model"]) for row in rows] == [("a", "noisy"), ("b", "noisy")]
    assert float(rows[0]["psnr"]) == float("inf") and float(rows[0]["ssim"]) == pytest.approx(1.0)
    assert table_row(capsys.readouterr().out, "noisy")[2] == f"{float(rows[1]['psnr']):.2f} (1 inf skipped)"


def test_raw_layout_scores_packed_planes(tmp_path, monkeypatch):
    model = tiny_checkpoint(tmp_path / "raw.pt", "cycleisp-raw", raw=True)
    generator = torch.Generator().manual_seed(2)
    clean = 0.2 + 0.6 * torch.rand(1, 50, 42, generator=generator)
    noisy = (clean + 0.05 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
    item = {"name": "scene_010", "clean": clean, "noisy": noisy, "pattern": "GRBG", "shot": 2e-3, "read": 1e-4}
    monkeypatch.setattr(evaluate, "open_pairs", lambda root, layout: [item])
    (tmp_path / "sidd").mkdir()
    assert (
        run_eval(
            [
                tmp_path / "sidd",
                "--layout",
                "sidd-raw",
                "--model",
                f"cycleisp-raw={tmp_path / 'raw.pt'}",
                "--csv",
                tmp_path / "s.csv",
            ]
        )
        == 0
    )
    _, rows = read_rows(tmp_path / "s.csv")

    def rggb_planes(mosaic):  # GRBG: drop the first column, then R at (0, 0); keep an even width
        m = mosaic[0, :, 1:41]
        return torch.stack([m[0::2, 0::2], m[0::2, 1::2], m[1::2, 0::2], m[1::2, 1::2]])

    clean_planes, noisy_planes = rggb_planes(clean), rggb_planes(noisy)
    with torch.no_grad():
        variance = 2e-3 * noisy_planes + 1e-4
        denoised = model(noisy_planes[None], variance[None])[0].clamp(0, 1)
    for row, output in zip(rows, [noisy_planes, denoised]):
        expected_psnr, expected_ssim = reference_scores(output, clean_planes)
        assert float(row["psnr"]) == pytest.approx(expected_psnr, abs=1e-4)
        assert float(row["ssim"]) == pytest.approx(expected_ssim, abs=1e-5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "cycleisp-raw={raw}"], "holds srgb pairs"),
        (["--model", "cycleisp-srgb={raw}"], "raw.pt"),
        (["--model", "cycleisp-srgb"], "needs weights"),
        (["--model", "cycleisp-srgb={srgb}", "--model", "cycleisp-srgb={srgb}"], "twice"),
        (["--model", "dncnn"], "unknown model"),
        (["--layout", "sidd-srgb"], "Data"),
        (["--model", "cycleisp-srgb={srgb}", "--precision", "bfloat16"], "with --optimize"),
    ],
)
def test_bad_options_exit_2(tmp_path, pairs, capsys, argv, message):
    tiny_checkpoint(tmp_path / "srgb.pt")
    tiny_checkpoint(tmp_path / "raw.pt", "cycleisp-raw", raw=True)
    argv = [arg.format(raw=tmp_path / "raw.pt", srgb=tmp_path / "srgb.pt") for arg in argv]
    with pytest.raises(SystemExit) as caught:
        run_eval([pairs, *argv, "--csv", tmp_path / "s.csv"])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()


def test_dnd_is_scored_by_its_server(tmp_path, capsys):
    (tmp_path / "dnd" / "images_srgb").mkdir(parents=True)
    (tmp_path / "dnd" / "info.mat").write_bytes(b"")
    with pytest.raises(SystemExit):
        run_eval([tmp_path / "dnd"])
    assert "online server" in capsys.readouterr().err


def test_a_corrupt_pair_stops_the_run_without_a_csv(tmp_path, pairs, capsys):
    (pairs / "noisy" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    assert run_eval([pairs, "--csv", tmp_path / "s.csv"]) == 1
    assert "b.png" in capsys.readouterr().err
    assert not (tmp_path / "s.csv").exists()
