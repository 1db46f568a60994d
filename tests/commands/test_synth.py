"""The synth command: output layout and contents against a direct call of the synthesizer, resume, bad input."""

import json

import numpy as np
import pytest
import torch

from cycleisp_fast.commands import synth as synth_command
from cycleisp_fast.data.images import quantize, read_image, write_image
from cycleisp_fast.data.locks import LOCK_NAME
from cycleisp_fast.noise import NoiseModel
from cycleisp_fast.pipelines.synthesis import UnprocessingSynthesizer


def _run(*argv):
    import argparse

    parser = argparse.ArgumentParser()
    synth_command.add_arguments(parser)
    args = parser.parse_args([str(a) for a in argv])
    return synth_command.run(args, parser)


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    torch.manual_seed(0)
    for name, (h, w) in {"a": (16, 20), "b": (16, 20), "c": (13, 10)}.items():
        write_image(folder / f"{name}.png", torch.rand(3, h, w))
    return folder


def test_outputs_are_the_synthesizers_pairs(inputs, tmp_path):
    out = tmp_path / "out"
    assert _run(inputs, "-o", out, "--seed", "5", "--batch-size", "4") == 0
    # a and b (same size) form batch 0; c (cropped to 12 x 10) batch 1
    synth = UnprocessingSynthesizer(NoiseModel("unprocessing"))
    batch0 = synth(torch.stack([read_image(inputs / "a.png"), read_image(inputs / "b.png")]), seed=5, offset=0)
    batch1 = synth(read_image(inputs / "c.png")[None, :, :12, :10], seed=5, offset=1)
    for pairs, j, name in ((batch0, 0, "a"), (batch0, 1, "b"), (batch1, 0, "c")):
        for kind, expected in (("clean", pairs.clean[j]), ("noisy", pairs.noisy[j])):
            written = np.asarray(read_image(out / kind / f"{name}.png") * 255).round()
            np.testing.assert_array_equal(written, quantize(expected, 8).transpose(2, 0, 1))
        raw = np.load(out / "raw" / f"{name}.npz")
        np.testing.assert_array_equal(raw["noisy"], pairs.noisy_raw[j].numpy())
        np.testing.assert_array_equal(raw["variance"], pairs.variance[j].numpy())
        assert raw["shot"] == pairs.shot[j].item() and raw["cam2rgb"].shape == (3, 3)
    assert json.loads((out / "synth.json").read_text())["inputs"] == ["a", "b", "c"]


def test_resume_recreates_missing_pairs_exactly(inputs, tmp_path):
    out = tmp_path / "out"
    assert _run(inputs, "-o", out, "--repeat", "2", "--format", "tiff") == 0
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name not in ("synth.json", LOCK_NAME))
    assert len(files) == 3 * 2 * 3
    before = {p: p.read_bytes() for p in files}
    (out / "noisy" / "b_1.tif").unlink()
    (out / "raw" / "c_0.npz").unlink()
    assert _run(inputs, "-o", out, "--repeat", "2", "--format", "tiff") == 0
    assert all(p.read_bytes() == data for p, data in before.items())
    with pytest.raises(ValueError, match="other settings \\(seed differ"):
        _run(inputs, "-o", out, "--repeat", "2", "--format", "tiff", "--seed", "1")


def test_bad_input_names_the_file_and_writes_nothing(inputs, tmp_path):
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="broken.png"):
        _run(inputs, "-o", out)
    assert not (out / "clean").exists()
    with pytest.raises(SystemExit):
        _run(inputs, "-o", out, "--pipeline", "cycleisp")  # no weights
    with pytest.raises(SystemExit):
        _run(inputs, "-o", out, "--repeat", "0")
