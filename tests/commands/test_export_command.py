"""``cycleisp-fast export`` and ``denoise --onnx``: the exported denoiser gives ``denoise`` the images the PyTorch
model gives it, and wrong combinations of options are refused naming them."""

from __future__ import annotations

import pytest
import torch
from test_denoise import scene, tiny_checkpoint

from cycleisp_fast import cli
from cycleisp_fast.data.images import read_image, write_image


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny trained sRGB denoiser's checkpoint and its ONNX export through the command line."""
    folder = tmp_path_factory.mktemp("export")
    tiny_checkpoint(folder / "tiny.pt", seed=3)
    argv = ["export", "--model", "cycleisp-srgb", "--weights", str(folder / "tiny.pt"), "-o", str(folder / "d.onnx")]
    assert cli.main(argv) == 0
    return folder


def test_denoise_onnx_writes_what_the_pytorch_model_writes(exported, tmp_path, capsys):
    write_image(tmp_path / "photo.png", scene(40, 56, seed=5))
    weights = ["--model", "cycleisp-srgb", "--weights", str(exported / "tiny.pt")]
    assert cli.main(["denoise", str(tmp_path / "photo.png"), "-o", str(tmp_path / "torch"), *weights]) == 0
    argv = ["denoise", str(tmp_path / "photo.png"), "-o", str(tmp_path / "onnx"), "--onnx", str(exported / "d.onnx")]
    assert cli.main(argv) == 0
    from_torch, from_onnx = read_image(tmp_path / "torch" / "photo.png"), read_image(tmp_path / "onnx" / "photo.png")
    assert (from_torch - from_onnx).abs().max() <= 1 / 255 + 1e-6  # 8-bit levels: at most one apart by rounding
    assert "denoised 1 of 1" in capsys.readouterr().out


@pytest.mark.parametrize(
    "options, message",
    [
        (["--onnx", "{onnx}", "--model", "cycleisp-srgb"], "--onnx replaces --model and --weights"),
        ([], "--model is required (or --onnx FILE"),
        (["--onnx", "{folder}/missing.onnx"], "exported model not found"),
    ],
    ids=["both", "neither", "missing"],
)
def test_denoise_model_option_errors(exported, tmp_path, capsys, options, message):
    write_image(tmp_path / "photo.png", scene(16, 16))
    options = [option.format(onnx=exported / "d.onnx", folder=tmp_path) for option in options]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["denoise", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), *options])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_denoise_onnx_refuses_an_isp_network(tmp_path, capsys):
    torch.manual_seed(0)
    from cycleisp_fast.models import CCM
    from cycleisp_fast.pipelines.export import export_model

    export_model(CCM().eval(), "ccm", tmp_path / "ccm.onnx")
    write_image(tmp_path / "photo.png", scene(16, 16))
    with pytest.raises(SystemExit):
        cli.main(
            ["denoise", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--onnx", str(tmp_path / "ccm.onnx")]
        )
    assert "holds ccm, not a denoiser" in capsys.readouterr().err


@pytest.mark.parametrize(
    "output, extra, message",
    [("d.onnx.bak", [], "must end in .onnx or .pt2"), ("d.onnx", ["--fused"], "use -o FILE.pt2")],
)
def test_export_option_errors_are_named(exported, tmp_path, capsys, output, extra, message):
    argv = ["export", "--model", "cycleisp-srgb", "--weights", str(exported / "tiny.pt"), "-o", str(tmp_path / output)]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv + extra)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / output).exists()


def test_export_of_weights_for_another_network_is_one_line(exported, tmp_path, capsys):
    argv = ["export", "--model", "cycleisp-raw", "--weights", str(exported / "tiny.pt"), "-o", str(tmp_path / "r.onnx")]
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert "cycleisp-raw" in capsys.readouterr().err and not (tmp_path / "r.onnx").exists()
