"""Pair synthesis: the analytic and learned pipelines against direct compositions of their steps, noise
statistics, reproducibility, clean patches."""

import math

import pytest
import torch

from cycleisp_fast.models import CCM, Raw2Rgb, Rgb2Raw, gaussian_kernel
from cycleisp_fast.noise import NoiseModel
from cycleisp_fast.pipelines import synthesis
from cycleisp_fast.pipelines.unprocessing import process, unprocess


def test_unprocessing_pairs_compose_the_steps():
    clean = torch.rand(3, 3, 16, 20)
    synth = synthesis.UnprocessingSynthesizer(noise_std=True)
    batch = synth(clean, seed=7, offset=2)
    cam = batch.camera
    torch.testing.assert_close(batch.clean_raw, unprocess(clean, cam))
    develop = lambda raw: process(raw, cam.red_gain, cam.blue_gain, cam.cam2rgb, rgb_gain=cam.rgb_gain, tone_map=True)
    torch.testing.assert_close(batch.clean, develop(batch.clean_raw))
    torch.testing.assert_close(batch.noisy, develop(batch.noisy_raw))
    shot, read = batch.shot[:, None, None, None], batch.read[:, None, None, None]
    torch.testing.assert_close(batch.variance, shot * batch.noisy_raw + read)
    assert batch.noisy_raw.min() >= 0 and batch.noisy_raw.max() <= 1
    assert batch.noise_std.shape == clean.shape and torch.all(batch.noise_std >= 0)


def test_unprocessing_pairs_are_reproducible_from_seed_and_offset():
    clean = torch.rand(2, 3, 8, 8)
    synth = synthesis.UnprocessingSynthesizer()
    a, b, c = synth(clean, seed=1, offset=0), synth(clean, seed=1, offset=0), synth(clean, seed=1, offset=1)
    assert all(torch.equal(x, y) for x, y in zip(a[:7], b[:7]))
    assert not torch.equal(a.noisy_raw, c.noisy_raw) and not torch.equal(a.camera.rgb2cam, c.camera.rgb2cam)
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(synth(clean, generator=g1).noisy, synth(clean, generator=g2).noisy)


def test_raw_noise_has_the_sampled_variance():
    # mid-grey RAW far from the clip: (noisy - clean) / sqrt(shot * clean + read) is standard normal
    clean = torch.full((4, 3, 128, 128), 0.45)
    synth = synthesis.UnprocessingSynthesizer(NoiseModel("unprocessing", clip=None))
    batch = synth(clean, seed=11)
    std = (batch.shot[:, None, None, None] * batch.clean_raw + batch.read[:, None, None, None]).sqrt()
    z = ((batch.noisy_raw - batch.clean_raw) / std).double()
    n = z.numel()
    assert abs(z.mean().item()) < 5 / math.sqrt(n)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / n)


def test_noise_std_tracks_the_developed_noise():
    # over many samples of one flat image, the sRGB noise's spread is of the order of noise_std
    clean = torch.full((1, 3, 64, 64), 0.4).expand(16, 3, 64, 64).contiguous()
    levels = lambda n, **kw: (torch.full((n,), 1e-3), torch.full((n,), 1e-5))
    synth = synthesis.UnprocessingSynthesizer(NoiseModel(levels, clip=None), noise_std=True)
    g = torch.Generator().manual_seed(0)
    batch = synth(clean, generator=g)
    measured = (batch.noisy - batch.clean)[..., 4:-4, 4:-4].std().item()
    predicted = batch.noise_std[..., 4:-4, 4:-4].mean().item()
    assert 0.3 < measured / predicted < 1.5  # first order, demosaic averaging lowers the measured spread


def _tiny_cycleisp():
    torch.manual_seed(0)
    return Rgb2Raw(backend="reference").eval(), CCM(backend="reference").eval(), Raw2Rgb(backend="reference").eval()


def test_cycleisp_pipeline_follows_the_generation_scripts():
    rgb2raw, ccm, raw2rgb = _tiny_cycleisp()
    clean = torch.rand(2, 3, 24, 24)
    synth = synthesis.CycleISPSynthesizer(rgb2raw, ccm, raw2rgb)
    with torch.no_grad():
        batch = synth(clean, seed=3)
        padded = torch.nn.functional.pad(clean, (2, 2, 2, 2), mode="reflect")
        blurred = torch.nn.functional.conv2d(padded, gaussian_kernel(5, 1.0, 3), groups=3)
        torch.testing.assert_close(batch.clean, blurred)
        torch.testing.assert_close(batch.clean_raw, rgb2raw(blurred).clamp(0, 1))
        torch.testing.assert_close(batch.noisy, raw2rgb(batch.noisy_raw, ccm(blurred)).clamp(0, 1))
    assert batch.camera is None and batch.noise_std is None
    assert repr(synth.noise).startswith("NoiseModel(levels='cycleisp_dnd'")


def test_make_synthesizer_loads_weights_and_names_bad_ones(tmp_path):
    rgb2raw, ccm, raw2rgb = _tiny_cycleisp()
    paths = {}
    for name, net in zip(synthesis.CYCLEISP_WEIGHTS, (rgb2raw, ccm, raw2rgb)):
        paths[name] = tmp_path / f"{name}.pth"
        torch.save({"state_dict": net.state_dict()}, paths[name])
    synth = synthesis.make_synthesizer("cycleisp", paths, backend="reference")
    with torch.no_grad():
        torch.testing.assert_close(synth(torch.rand(1, 3, 16, 16), seed=0).clean_raw.shape, torch.Size([1, 4, 8, 8]))
    swapped = dict(paths, rgb2raw=paths["ccm"])
    with pytest.raises(ValueError, match="rgb2raw weights .*ccm.pth"):
        synthesis.make_synthesizer("cycleisp", swapped)
    with pytest.raises(ValueError, match="missing \\['raw2rgb'\\]"):
        synthesis.make_synthesizer("cycleisp", {"rgb2raw": paths["rgb2raw"], "ccm": paths["ccm"]})
    with pytest.raises(ValueError, match="takes no weights"):
        synthesis.make_synthesizer("unprocessing", paths)
    with pytest.raises(ValueError, match="kind must be one of"):
        synthesis.make_synthesizer("brooks")


def test_bad_calls():
    synth = synthesis.UnprocessingSynthesizer()
    with pytest.raises(ValueError, match="even"):
        synth(torch.rand(1, 3, 7, 8))
    with pytest.raises(ValueError, match="not both"):
        synth(torch.rand(1, 3, 8, 8), seed=1, generator=torch.Generator())
    with pytest.raises(TypeError, match="floating"):
        synth(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_clean_patches_are_crops_and_reproducible():
    image = torch.rand(3, 20, 30)
    patches = synthesis.CleanPatches([image], 8, length=50, seed=3)
    again = synthesis.CleanPatches([image], 8, length=50, seed=3)
    for i in range(50):
        patch = patches[i]
        assert torch.equal(patch, again[i])
        # undo each of the 8 dihedral transforms; one must be a crop of the image at an even offset
        found = False
        for k in range(8):
            for top in range(0, 13, 2):
                for left in range(0, 23, 2):
                    found |= torch.equal(synthesis.dihedral(image[:, top : top + 8, left : left + 8], k), patch)
        assert found
    assert not all(torch.equal(patches[i], synthesis.CleanPatches([image], 8, length=50, seed=4)[i]) for i in range(5))
    with pytest.raises(ValueError, match="smaller than patch_size"):
        synthesis.CleanPatches([torch.rand(3, 6, 30)], 8, length=1)
    with pytest.raises(ValueError, match="even"):
        synthesis.CleanPatches([image], 7, length=1)
    with pytest.raises(IndexError):
        patches[50]


def test_synthetic_pairs_dataset_is_the_synthesizer_per_item():
    patches = synthesis.CleanPatches([torch.rand(3, 24, 24)], 8, length=6, seed=2)
    synth = synthesis.UnprocessingSynthesizer(noise_std=True)
    pairs = synthesis.SyntheticPairs(patches, synth, seed=9)
    assert len(pairs) == 6
    item = pairs[4]
    direct = synth(patches[4][None], seed=9, offset=4)
    for name in ("clean", "noisy", "noisy_raw", "variance", "noise_std", "shot"):
        torch.testing.assert_close(item[name], getattr(direct, name)[0])
    loader = torch.utils.data.DataLoader(pairs, batch_size=3)
    first = next(iter(loader))
    assert first["noisy"].shape == (3, 3, 8, 8) and first["variance"].shape == (3, 4, 4, 4)
    torch.testing.assert_close(first["noisy"][1], pairs[1]["noisy"])
