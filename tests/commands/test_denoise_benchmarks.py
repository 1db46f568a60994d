"""``denoise`` on benchmarks: a DND folder (both kinds, margins, resume) and SIDD blocks files, checked against the
models run independently here and field by field in the files written; bad inputs exit 2 with nothing written."""

from __future__ import annotations

import base64
import csv

import numpy as np
import pytest
import scipy.io
import torch
from matlab_files import DND_BOXES, DND_NLF, DND_PATTERNS, write_dnd, write_sidd_blocks
from test_denoise import run_denoise, tiny_checkpoint

from cycleisp_fast.data.images import quantize
from cycleisp_fast.data.raw import pack_rggb
from cycleisp_fast.noise.estimation import estimate_raw_noise

# DND's official RAW script flips each box to RGGB: fliplr (axis 1) for GRBG, flipud (axis 0) for GBRG.
OFFICIAL_FLIPS = {"RGGB": (), "GRBG": (1,), "GBRG": (0,), "BGGR": (0, 1)}


def shifted_pattern(pattern: str, top: int, left: int) -> str:
    grid = np.tile(np.array(list(pattern)).reshape(2, 2), (2, 2))
    return "".join(grid[top % 2 : top % 2 + 2, left % 2 : left % 2 + 2].ravel())


def raw_reference(model, mosaic: np.ndarray, pattern: str, shot: float, read: float) -> np.ndarray:
    """A mosaic denoised the official way: padded to even sides by reflection, flipped to RGGB, planes
    (R, Gr, Gb, B), ``model(planes, shot * planes + read)``, put back, flipped back, cropped."""
    height, width = mosaic.shape
    even = np.flip(np.pad(mosaic, ((0, height % 2), (0, width % 2)), mode="reflect"), OFFICIAL_FLIPS[pattern])
    planes = torch.from_numpy(np.stack([even[y::2, x::2] for y in (0, 1) for x in (0, 1)]).astype(np.float32))[None]
    with torch.no_grad():
        output = model(planes, shot * planes + read).clamp(0, 1)[0].numpy()
    result = np.empty_like(even)
    for channel, (y, x) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        result[y::2, x::2] = output[channel]
    return np.flip(result, OFFICIAL_FLIPS[pattern])[:height, :width]


def box_with_context(image: np.ndarray, box, margin: int):
    first_row, first_col, last_row, last_col = (int(v) for v in box)
    top, left = max(first_row - 1 - margin, 0), max(first_col - 1 - margin, 0)
    bottom, right = min(last_row + margin, image.shape[0]), min(last_col + margin, image.shape[1])
    inner = (slice(first_row - 1 - top, last_row - top), slice(first_col - 1 - left, last_col - left))
    return image[top:bottom, left:right], inner, (top, left)


def box_files(outdir) -> list[str]:
    return sorted(path.name for path in outdir.iterdir() if path.is_file())


@pytest.mark.parametrize("margin", [0, 3])
def test_dnd_srgb_boxes_and_bundles(tmp_path, capsys, margin):
    model = tiny_checkpoint(tmp_path / "s.pt")
    images = write_dnd(tmp_path / "dnd")  # both kinds: the model's domain picks sRGB
    assert (
        run_denoise(
            [
                tmp_path / "dnd",
                "-o",
                tmp_path / "out",
                "--model",
                "cycleisp-srgb",
                "--weights",
                tmp_path / "s.pt",
                "--margin",
                margin,
            ]
        )
        == 0
    )
    assert "6 box(es) denoised, 0 already" in capsys.readouterr().out
    assert box_files(tmp_path / "out") == [f"000{i}_0{b}.mat" for i in (1, 2) for b in (1, 2, 3)]
    for number, boxes in enumerate(DND_BOXES):
        crops = []
        for box_number, box in enumerate(boxes):
            context, inner, _ = box_with_context(images["srgb", number], box, margin)
            with torch.no_grad():
                output = model(torch.from_numpy(context.transpose(2, 0, 1).copy())[None]).clamp(0, 1)
            expected = output[0].numpy().transpose(1, 2, 0)[inner]
            path = tmp_path / "out" / f"{number + 1:04d}_{box_number + 1:02d}.mat"
            assert scipy.io.whosmat(path) == [("Idenoised_crop", (8, 8, 3), "single")]
            crop = scipy.io.loadmat(path)["Idenoised_crop"]
            np.testing.assert_allclose(crop, expected, rtol=1e-5, atol=1e-6)
            crops.append(crop)
        bundle = scipy.io.loadmat(tmp_path / "out" / "bundled" / f"{number + 1:04d}.mat")
        assert bundle["Idenoised"].shape == (1, 3) and bundle["eval_version"].tolist() == ["1.0"]
        assert bundle["israw"].tolist() == [[0]]
        assert all(np.array_equal(saved, crop) for saved, crop in zip(bundle["Idenoised"][0], crops))


@pytest.mark.parametrize("margin", [0, 3])
def test_dnd_raw_boxes_are_flipped_to_rggb_and_keep_their_size(tmp_path, margin):
    model = tiny_checkpoint(tmp_path / "r.pt", "cycleisp-raw", raw=True)
    images = write_dnd(tmp_path / "dnd", kinds=("raw",))
    assert (
        run_denoise(
            [
                tmp_path / "dnd",
                "-o",
                tmp_path / "out",
                "--model",
                "cycleisp-raw",
                "--weights",
                tmp_path / "r.pt",
                "--margin",
                margin,
            ]
        )
        == 0
    )
    for number, boxes in enumerate(DND_BOXES):
        shot, read = DND_NLF[number]
        for box_number, box in enumerate(boxes):
            context, inner, (top, left) = box_with_context(images["raw", number], box, margin)
            pattern = shifted_pattern(DND_PATTERNS[number], top, left)
            expected = raw_reference(model, context, pattern, shot, read)[inner]
            path = tmp_path / "out" / f"{number + 1:04d}_{box_number + 1:02d}.mat"
            assert scipy.io.whosmat(path) == [("Idenoised_crop", (8, 8), "single")]
            np.testing.assert_allclose(scipy.io.loadmat(path)["Idenoised_crop"], expected, rtol=1e-5, atol=1e-6)
    bundle = tmp_path / "out" / "bundled" / "0002.mat"
    assert ("israw", (1, 1), "logical") in scipy.io.whosmat(bundle)
    assert scipy.io.loadmat(bundle)["israw"].tolist() == [[1]]


def test_dnd_rerun_recomputes_only_the_missing_box(tmp_path, capsys):
    write_dnd(tmp_path / "dnd", kinds=("srgb",))
    argv = [tmp_path / "dnd", "-o", tmp_path / "out", "--model", "noisy"]
    assert run_denoise(argv) == 0
    files = [path for path in (tmp_path / "out").rglob("*.mat")]
    before = {path: path.stat().st_mtime_ns for path in files}
    (tmp_path / "out" / "0002_02.mat").unlink()
    capsys.readouterr()
    assert run_denoise(argv) == 0
    assert "1 box(es) denoised, 5 already" in capsys.readouterr().out
    changed = sorted(
        str(path.relative_to(tmp_path / "out"))
        for path in files
        if not path.is_file() or path.stat().st_mtime_ns != before[path]
    )
    assert changed == ["0002_02.mat", "bundled/0002.mat"]
    assert scipy.io.loadmat(tmp_path / "out" / "bundled" / "0002.mat")["Idenoised"].shape == (1, 3)
    assert box_files(tmp_path / "out") == sorted(path.name for path in files if path.parent.name == "out")


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_image", "1 of the 2 DND images listed in"),
        ("raw_model_on_srgb", "model cycleisp-raw denoises raw images; the DND folder"),
        ("noisy_on_both", "holds both sRGB and RAW images; say which the noisy baseline takes with --layout"),
        ("pattern_on_dnd", "--pattern does not apply to DND"),
        ("second_input", "give it as the only INPUT"),
        ("margin_on_images", "--margin apply to benchmark inputs"),
        ("negative_margin", "expected an integer >= 0, got '-1'"),
    ],
)
def test_bad_dnd_runs_exit_2_and_write_nothing(tmp_path, capsys, case, message):
    tiny_checkpoint(tmp_path / "r.pt", "cycleisp-raw", raw=True)
    write_dnd(tmp_path / "dnd", kinds=("srgb",) if case != "noisy_on_both" else ("srgb", "raw"))
    (tmp_path / "a.png").write_bytes(b"")
    argv = {
        "missing_image": ["--model", "noisy"],
        "raw_model_on_srgb": ["--model", "cycleisp-raw", "--weights", tmp_path / "r.pt"],
        "noisy_on_both": ["--model", "noisy"],
        "pattern_on_dnd": ["--model", "noisy", "--pattern", "RGGB"],
        "second_input": ["--model", "noisy"],
        "margin_on_images": ["--model", "noisy", "--margin", "4"],
        "negative_margin": ["--model", "noisy", "--margin", "-1"],
    }[case]
    if case == "missing_image":
        (tmp_path / "dnd" / "images_srgb" / "0002.mat").unlink()
    inputs = {"margin_on_images": [tmp_path / "a.png"], "second_input": [tmp_path / "dnd", tmp_path / "a.png"]}.get(
        case, [tmp_path / "dnd"]
    )
    with pytest.raises(SystemExit) as caught:
        run_denoise([*inputs, "-o", tmp_path / "out", *argv])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if case == "missing_image":
        assert "images_srgb: 0002.mat" in err
    assert not (tmp_path / "out").exists()


def test_sidd_srgb_submission(tmp_path, capsys):
    model = tiny_checkpoint(tmp_path / "s.pt")
    noisy = np.random.default_rng(1).integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    write_sidd_blocks(tmp_path / "BenchmarkNoisyBlocksSrgb.mat", "BenchmarkNoisyBlocksSrgb", noisy)
    assert (
        run_denoise(
            [
                tmp_path / "BenchmarkNoisyBlocksSrgb.mat",
                "-o",
                tmp_path / "out",
                "--model",
                "cycleisp-srgb",
                "--weights",
                tmp_path / "s.pt",
                "--optional-data",
                "Authors=Jane Doe",
                "--optional-data",
                "Venue=Test",
            ]
        )
        == 0
    )
    assert "6 srgb blocks denoised" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["SubmitSrgb.csv", "SubmitSrgb.mat"]
    assert scipy.io.whosmat(tmp_path / "out" / "SubmitSrgb.mat") == [
        ("DenoisedBlocksSrgb", (2, 3), "cell"),
        ("TimeMPSrgb", (1, 1), "double"),
        ("OptionalData", (1, 1), "struct"),
    ]
    contents = scipy.io.loadmat(tmp_path / "out" / "SubmitSrgb.mat")
    with open(tmp_path / "out" / "SubmitSrgb.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for image in range(2):
        for block in range(3):
            with torch.no_grad():
                output = model(torch.from_numpy(noisy[image, block].transpose(2, 0, 1)).float()[None] / 255)
            saved = contents["DenoisedBlocksSrgb"][image, block]
            assert saved.dtype == np.uint8 and saved.shape == (16, 16, 3)
            assert np.array_equal(saved, quantize(output[0].clamp(0, 1), 8))
            row = rows[image * 3 + block]
            assert row["ID"] == str(image * 3 + block)
            decoded = np.frombuffer(base64.b64decode(row["BLOCK"]), dtype=np.uint8).reshape(16, 16, 3)
            assert np.array_equal(decoded, saved)
    assert contents["TimeMPSrgb"].dtype == np.float64 and float(contents["TimeMPSrgb"][0, 0]) > 0
    optional = contents["OptionalData"][0, 0]
    fields = {name: str(optional[name][0]) for name in optional.dtype.names}
    assert fields["MethodName"] == "cycleisp-srgb (s.pt)" and fields["MachineSpecs"]
    assert (fields["Authors"], fields["Venue"]) == ("Jane Doe", "Test")


def test_sidd_raw_submission_keeps_the_blocks_dtype(tmp_path):
    model = tiny_checkpoint(tmp_path / "r.pt", "cycleisp-raw", raw=True)
    noisy = np.random.default_rng(2).uniform(0.05, 0.95, (2, 3, 12, 10)).astype(np.float32)
    write_sidd_blocks(tmp_path / "BenchmarkNoisyBlocksRaw.mat", "BenchmarkNoisyBlocksRaw", noisy, v73=True)
    assert (
        run_denoise(
            [
                tmp_path / "BenchmarkNoisyBlocksRaw.mat",
                "-o",
                tmp_path / "out",
                "--model",
                "cycleisp-raw",
                "--weights",
                tmp_path / "r.pt",
                "--pattern",
                "S6,IP",
                "--shot",
                "0.002",
                "--read",
                "0.0001",
            ]
        )
        == 0
    )
    assert scipy.io.whosmat(tmp_path / "out" / "SubmitRaw.mat") == [
        ("DenoisedBlocksRaw", (2, 3), "cell"),
        ("TimeMPRaw", (1, 1), "double"),
        ("OptionalData", (1, 1), "struct"),
    ]
    contents = scipy.io.loadmat(tmp_path / "out" / "SubmitRaw.mat")
    for image, pattern in enumerate(["GRBG", "RGGB"]):  # S6, IP
        for block in range(3):
            saved = contents["DenoisedBlocksRaw"][image, block]
            assert saved.dtype == np.float32 and saved.shape == (12, 10)
            expected = raw_reference(model, noisy[image, block], pattern, 0.002, 0.0001)
            np.testing.assert_allclose(saved, expected, rtol=1e-5, atol=1e-6)
    assert float(contents["TimeMPRaw"][0, 0]) > 0


def test_sidd_raw_noise_is_estimated_per_image_without_shot_and_read(tmp_path):
    model = tiny_checkpoint(tmp_path / "r.pt", "cycleisp-raw", raw=True)
    rows, cols = np.indices((40, 40)) / 40
    clean = 0.2 + 0.5 * (rows + cols) / 2
    noisy = np.clip(clean + np.random.default_rng(4).standard_normal((1, 3, 40, 40)) * np.sqrt(3e-3 * clean), 0, 1)
    write_sidd_blocks(tmp_path / "BenchmarkNoisyBlocksRaw.mat", "BenchmarkNoisyBlocksRaw", noisy)
    assert (
        run_denoise(
            [
                tmp_path / "BenchmarkNoisyBlocksRaw.mat",
                "-o",
                tmp_path / "out",
                "--model",
                "cycleisp-raw",
                "--weights",
                tmp_path / "r.pt",
                "--pattern",
                "GP",
            ]
        )
        == 0
    )
    levels = estimate_raw_noise(pack_rggb(torch.from_numpy(noisy[0]).float(), "BGGR"), pooled=True)
    shot, read = float(levels.shot[0]), float(levels.read[0])
    assert shot == pytest.approx(3e-3, rel=0.3)
    saved = scipy.io.loadmat(tmp_path / "out" / "SubmitRaw.mat")["DenoisedBlocksRaw"]
    for block in range(3):
        assert saved[0, block].dtype == np.float64  # the noisy blocks' dtype
        expected = raw_reference(model, noisy[0, block].astype(np.float32), "BGGR", shot, read)
        np.testing.assert_allclose(saved[0, block], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "case, message",
    [
        (
            "wrong_rank",
            r"'BenchmarkNoisyBlocksSrgb' must be (n_images, n_blocks, h, w, 3) uint8, got shape (6, 16, 16, 3)",
        ),
        ("wrong_dtype", "'BenchmarkNoisyBlocksSrgb' must be (n_images, n_blocks, h, w, 3) uint8, got dtype float64"),
        ("missing_key", "holds no array 'BenchmarkNoisyBlocksSrgb' or 'BenchmarkNoisyBlocksRaw'"),
        ("raw_without_pattern", "carry no Bayer pattern: give it (pattern=, --pattern on the command line)"),
        ("raw_model_on_srgb", "model cycleisp-raw denoises raw images;"),
        ("margin_on_sidd", "--margin applies to DND folders"),
    ],
)
def test_bad_sidd_runs_exit_2_and_write_nothing(tmp_path, capsys, case, message):
    tiny_checkpoint(tmp_path / "r.pt", "cycleisp-raw", raw=True)
    path = tmp_path / "blocks.mat"
    key, blocks = {
        "wrong_rank": ("BenchmarkNoisyBlocksSrgb", np.zeros((6, 16, 16, 3), np.uint8)),
        "wrong_dtype": ("BenchmarkNoisyBlocksSrgb", np.zeros((2, 3, 16, 16, 3))),
        "missing_key": ("x", np.zeros((2, 3, 16, 16, 3), np.uint8)),
        "raw_without_pattern": ("BenchmarkNoisyBlocksRaw", np.zeros((2, 3, 16, 16))),
    }.get(case, ("BenchmarkNoisyBlocksSrgb", np.zeros((2, 3, 16, 16, 3), np.uint8)))
    write_sidd_blocks(path, key, blocks)
    extra = {
        "raw_model_on_srgb": ["--model", "cycleisp-raw", "--weights", tmp_path / "r.pt"],
        "margin_on_sidd": ["--model", "noisy", "--margin", "2"],
    }.get(case, ["--model", "noisy"])
    with pytest.raises(SystemExit) as caught:
        run_denoise([path, "-o", tmp_path / "out", *extra])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    if case in ("wrong_rank", "wrong_dtype", "missing_key", "raw_without_pattern"):
        assert str(path) in err
    assert not (tmp_path / "out").exists()
