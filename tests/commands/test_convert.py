"""``convert``, and ``denoise`` / ``eval`` with AINDNet's official TF checkpoint (written by real TensorFlow)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

pytest.importorskip("tensorflow", reason="needs tensorflow-cpu (requirements-dev.txt)")
import official_aindnet_tf as tf_graph  # noqa: E402

from cycleisp_fast.commands import convert as convert_command  # noqa: E402
from cycleisp_fast.commands import denoise as denoise_command  # noqa: E402
from cycleisp_fast.commands import evaluate as evaluate_command  # noqa: E402
from cycleisp_fast.data.images import read_image, write_image  # noqa: E402
from cycleisp_fast.models import AINDNet, load_official  # noqa: E402


def run(module, argv) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args([str(arg) for arg in argv]), parser)


@pytest.fixture(scope="module")
def tf_folder(tmp_path_factory):
    """An official-layout TF checkpoint folder (small random weights, so the network does something)."""
    graph = tf_graph.OfficialAINDNetGraph()
    graph.randomize(seed=4, std=0.02)
    folder = tmp_path_factory.mktemp("SIDD_transfer")
    graph.save(str(folder / "model"))
    return folder


def test_convert_then_denoise_gives_what_the_tf_checkpoint_gives(tf_folder, tmp_path, capsys):
    converted = tmp_path / "aindnet.pt"
    assert run(convert_command, ["--model", "aindnet", "--weights", tf_folder, "-o", converted]) == 0
    assert "256 tensors, 13,764,014 parameters" in capsys.readouterr().out
    state = torch.load(converted, weights_only=True)
    expected = load_official(AINDNet(), tf_folder).state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)
    photo = tmp_path / "photo.png"
    write_image(photo, torch.rand(3, 23, 37, generator=torch.Generator().manual_seed(0)))
    outputs = {}
    for label, weights in (("tf", tf_folder), ("pt", converted)):
        outdir = tmp_path / label
        assert run(denoise_command, [photo, "-o", outdir, "--model", "aindnet", "--weights", weights]) == 0
        outputs[label] = read_image(outdir / "photo.png")
    assert torch.equal(outputs["tf"], outputs["pt"]) and not torch.equal(outputs["tf"], read_image(photo))


def test_eval_takes_the_tf_checkpoint(tf_folder, tmp_path, capsys):
    for kind in ("clean", "noisy"):
        (tmp_path / "pairs" / kind).mkdir(parents=True)
    for index in range(2):
        clean = torch.rand(3, 17, 19, generator=torch.Generator().manual_seed(index))
        write_image(tmp_path / "pairs" / "clean" / f"{index}.png", clean)
        write_image(tmp_path / "pairs" / "noisy" / f"{index}.png", (clean + 0.05 * torch.randn(3, 17, 19)).clamp(0, 1))
    assert run(evaluate_command, [tmp_path / "pairs", "--model", f"aindnet={tf_folder}"]) == 0
    assert "| aindnet" in capsys.readouterr().out


@pytest.mark.parametrize(
    "make_argv, message",
    [
        (lambda folder, tmp: ["--model", "aindnet", "--weights", tmp / "missing", "-o", tmp / "a.pt"], "not found"),
        (
            lambda folder, tmp: ["--model", "aindnet", "--weights", tmp, "-o", tmp / "a.pt"],
            "holds no TensorFlow 'checkpoint' file",
        ),
        (
            lambda folder, tmp: ["--model", "cycleisp-srgb", "--weights", folder, "-o", tmp / "a.pt"],
            "is a TensorFlow checkpoint, the format of AINDNet's",
        ),
        (lambda folder, tmp: ["--model", "aindnet", "--weights", folder, "-o", tmp], "is a folder"),
    ],
)
def test_convert_errors_are_one_clear_line(tf_folder, tmp_path, capsys, make_argv, message):
    with pytest.raises(SystemExit) as exit_info:
        run(convert_command, make_argv(tf_folder, tmp_path))
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.glob("*.pt"))


def test_convert_refuses_weights_that_give_non_finite_outputs(tmp_path, capsys):
    values = tf_graph.OfficialAINDNetGraph().randomize(seed=1)
    values["AINDNet/conv6/biases"] = np.full(3, np.nan, np.float32)
    prefix = tf_graph.write_checkpoint(str(tmp_path / "model.ckpt-5"), values)
    with pytest.raises(SystemExit):
        run(convert_command, ["--model", "aindnet", "--weights", prefix, "-o", tmp_path / "a.pt"])
    assert "non-finite" in capsys.readouterr().err and not (tmp_path / "a.pt").exists()
