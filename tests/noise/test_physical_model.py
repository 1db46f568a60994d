"""Camera noise profiles and the physical noise model: the shipped ELD profiles against ELD's published numbers, the
schema's checks, ELD's parameter sampling (regressions recover the log-linear fits, buckets), virtual cameras,
the Tukey-lambda variance, ``NoiseModel("eld:...")``, and the pipelines that take profiles (synth, shards,
training)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from scipy import stats

from cycleisp_fast import cli
from cycleisp_fast.noise import NoiseModel, PhysicalNoiseModel, builtin_profiles, load_profile, virtual_cameras
from cycleisp_fast.noise.physical import tukey_lambda_variance
from cycleisp_fast.noise.profiles import ProfileError, write_profile

pytestmark = pytest.mark.usefixtures("one_thread")

ELD_TABLE = {
    # camera: (K_min, K_max, lambda min, lambda max, G_scale slope/bias/sigma, R_scale slope/bias/sigma), from
    # ../shared/specs/kernels_and_conventions.md section 5.1 (ELD's released camera_params files)
    "SonyA7S2": (0.094, 6.011, -0.143, 0.129, (0.462, 0.566, 0.263), (0.528, -0.592, 0.294)),
    "NikonD850": (0.415, 26.563, -0.243, -0.100, (0.477, -0.090, 0.239), (0.448, -1.798, 0.232)),
    "CanonEOS70D": (0.407, 26.080, -0.171, 0.143, (0.487, 1.464, 0.382), (0.729, -0.937, 0.250)),
    "CanonEOS700D": (0.448, 28.648, -0.157, 0.129, (0.598, 1.537, 0.389), (0.622, -0.776, 0.248)),
    "CanonEOS5D4": (0.218, 13.964, 0.014, 0.200, (0.656, 1.093, 0.286), (0.471, -0.808, 0.244)),
}


@pytest.mark.parametrize("camera", sorted(ELD_TABLE))
def test_shipped_eld_profiles_hold_elds_published_parameters(camera):
    k_min, k_max, l_min, l_max, tukey, row = ELD_TABLE[camera]
    profile = load_profile(f"eld:{camera}")
    assert profile.components == "pgtrqc" and profile.saturation == 16383 - 800
    assert profile.gain_range == pytest.approx((k_min, k_max), abs=1e-3)
    assert (min(profile.tukey_shapes), max(profile.tukey_shapes)) == pytest.approx((l_min, l_max), abs=1e-3)
    assert (profile.read_tukey.slope, profile.read_tukey.bias, profile.read_tukey.sigma) == pytest.approx(
        tukey, abs=1e-3
    )
    assert (profile.row.slope, profile.row.bias, profile.row.sigma) == pytest.approx(row, abs=1e-3)
    assert len(profile.color_bias) == len(profile.tukey_shapes) and "Vandermode/ELD" in profile.source


def test_builtin_names():
    assert set(builtin_profiles()) == {f"eld:{camera}" for camera in ELD_TABLE}


def test_sampling_follows_elds_log_linear_model():
    """log K uniform on the range; regressing log sigma on log K recovers slope, bias and the residual sigma;
    Tukey shape and colour bias are the entries of K's bucket."""
    profile = load_profile("eld:SonyA7S2")
    params = profile.sample(20000, generator=torch.Generator().manual_seed(1))
    log_k = params.gain.log().numpy()
    low, high = np.log(profile.gain_range)
    assert low <= log_k.min() and log_k.max() <= high
    assert stats.kstest((log_k - low) / (high - low), "uniform").pvalue > 1e-7
    for fit, values in ((profile.read_tukey, params.read_scale), (profile.row, params.row_scale)):
        result = stats.linregress(log_k, values.log().numpy())
        residual = values.log().numpy() - (result.slope * log_k + result.intercept)
        assert result.slope == pytest.approx(fit.slope, abs=0.03)
        assert result.intercept == pytest.approx(fit.bias, abs=0.03)
        assert residual.std() == pytest.approx(fit.sigma, rel=0.03)
    count = len(profile.tukey_shapes)
    bucket = np.clip(
        np.floor((params.gain.numpy() - profile.gain_range[0]) / np.diff(profile.gain_range) * count), 0, count - 1
    )
    assert np.array_equal(params.read_shape.numpy(), np.asarray(profile.tukey_shapes)[bucket.astype(int)])
    assert np.array_equal(params.bias.numpy(), np.asarray(profile.color_bias)[bucket.astype(int)])
    assert torch.equal(params.quant_step, torch.ones(20000, dtype=torch.float64))


@pytest.mark.parametrize("shape", [-0.4, -0.2, -1e-5, 0.0, 1e-5, 0.1, 0.5, 1.0])
def test_tukey_lambda_variance_matches_scipy(shape):
    expected = stats.tukeylambda(shape).var()
    assert float(tukey_lambda_variance(torch.tensor(shape))) == pytest.approx(expected, rel=1e-4)
    assert math.isinf(float(tukey_lambda_variance(torch.tensor(-0.5))))


def test_noise_model_of_a_profile_is_seeded_and_has_the_stated_variance():
    """NoiseModel("eld:SonyA7S2") is the physical model; (seed, offset) fix parameters and noise; the variance of
    y - x per image is the reported shot * x + read (colour bias aside)."""
    model = NoiseModel("eld:SonyA7S2", ratio=(20, 40), components="ptrq")
    assert isinstance(model, PhysicalNoiseModel)
    clean = torch.full((6, 4, 64, 64), 0.3)
    sample = model(clean, seed=3, offset=2)
    again = model(clean, seed=3, offset=2)
    assert torch.equal(sample.noisy, again.noisy) and torch.equal(sample.params.gain, again.params.gain)
    assert not torch.equal(sample.noisy, model(clean, seed=3, offset=1).noisy)
    assert bool(((sample.ratio >= 20) & (sample.ratio <= 40)).all())
    expected = sample.shot * 0.3 + sample.read
    measured = (sample.noisy - clean).var(dim=(1, 2, 3))
    # 16384 samples per image (row noise: 128 independent rows), so the sample variance is within ~10 %
    assert bool(((measured / expected - 1).abs() < 0.2).all()), (measured, expected)
    shot, read = sample.shot.view(-1, 1, 1, 1), sample.read.view(-1, 1, 1, 1)
    torch.testing.assert_close(sample.variance, shot * sample.noisy.clamp(min=0) + read)


def test_profiles_and_virtual_cameras_mix_per_image():
    cameras = virtual_cameras(3, seed=4)
    assert [c.camera for c in cameras] == ["virtual0", "virtual1", "virtual2"]
    assert cameras == virtual_cameras(3, seed=4) and cameras != virtual_cameras(3, seed=5)
    span = [load_profile(name).read_tukey.slope for name in builtin_profiles()]
    assert all(min(span) <= c.read_tukey.slope <= max(span) for c in cameras)
    model = PhysicalNoiseModel(["eld:SonyA7S2", "eld:NikonD850"], ratio=1)
    params, ratio, scale, camera = model.sample_params(400, generator=torch.Generator().manual_seed(0))
    assert set(camera.tolist()) == {0, 1}
    # both cameras drawn: gains below Nikon's range are Sony's, above Sony's Nikon's (expected 18 % each)
    assert 0.12 < float((params.gain < 0.415).double().mean()) < 0.25
    assert 0.12 < float((params.gain > 6.011).double().mean()) < 0.25
    assert torch.equal(ratio, torch.ones(400, dtype=torch.float64)) and torch.equal(
        scale, torch.full((400,), 15583.0, dtype=torch.float64)
    )


def good_profile():
    return load_profile("eld:SonyA7S2").to_dict()


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d.pop("K"), r"missing keys \['K'\]"),
        (lambda d: d.update(noise=1), r"unknown keys \['noise'\]"),
        (lambda d: d.update(K=[-1.0, 2.0]), "K must be > 0"),
        (lambda d: d.update(K=[3.0, 2.0]), "K_min <= K_max"),
        (lambda d: d["read_tukey"].update({"lambda": [0.1, 1.5]}), r"lambda values must lie in \[-1, 1\]"),
        (lambda d: d["row"].pop("slope"), "row must be an object with keys"),
        (lambda d: d["row"].update(sigma=-0.1), "row.sigma must be >= 0"),
        (lambda d: d.update(color_bias=[[1.0, 2.0, 3.0]]), r"color_bias must be a non-empty list of \[R, Gr, Gb, B\]"),
        (lambda d: d.update(saturation=0), "saturation must be > 0"),
        (lambda d: d.update(format="other/2"), "format must be"),
    ],
)
def test_bad_profiles_are_named_by_file_and_key(tmp_path, change, match):
    data = good_profile()
    change(data)
    path = tmp_path / "camera.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=match) as error:
        load_profile(path)
    assert str(path) in str(error.value)
    with pytest.raises(ProfileError, match=match):
        write_profile(data, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_unknown_names_and_unreadable_files(tmp_path):
    with pytest.raises(ProfileError, match="unknown noise profile 'eld:Nope'"):
        load_profile("eld:Nope")
    with pytest.raises(ProfileError, match="neither a built-in name"):
        load_profile(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ProfileError, match="not a JSON profile"):
        load_profile(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="unknown letters"):
        PhysicalNoiseModel("eld:SonyA7S2", components="pgd")
    rowless = good_profile()
    del rowless["row"]
    write_profile(rowless, tmp_path / "rowless.json")
    assert PhysicalNoiseModel(tmp_path / "rowless.json").components == "ptqc"
    with pytest.raises(ValueError, match=r"lack parameters for \['r'\]"):
        PhysicalNoiseModel(tmp_path / "rowless.json", components="ptr")
    with pytest.raises(ValueError, match="ratio must have low <= high"):
        PhysicalNoiseModel("eld:SonyA7S2", ratio=(300, 100))
    with pytest.raises(ValueError, match="takes model 'physical'"):
        NoiseModel("eld:SonyA7S2", "poisson_gaussian")
    with pytest.raises(ValueError, match="needs camera profiles"):
        NoiseModel("cycleisp_dnd", "physical")


def test_a_written_profile_loads_back_the_same(tmp_path):
    profile = load_profile("eld:CanonEOS70D")
    assert load_profile(write_profile(profile, tmp_path / "copy.json")) == profile


# ---- pipelines ---------------------------------------------------------------------------------------------


def test_synth_with_a_profile_writes_the_models_noise(tmp_path):
    """``synth --levels eld:SonyA7S2 --ratio 20``: the stored noisy RAW of the batch is the physical model's sample
    of the stored clean RAW under (seed, offset 0)."""
    out = tmp_path / "out"
    assert (
        cli.main(
            [
                "synth",
                "-o",
                os.fspath(out),
                "--levels",
                "eld:SonyA7S2",
                "--ratio",
                "20",
                "--max-size",
                "32",
                "--seed",
                "4",
            ]
        )
        == 0
    )
    settings = json.loads((out / "synth.json").read_text())
    assert (settings["levels"], settings["noise"], settings["ratio"]) == ("eld:SonyA7S2", "physical", [20.0, 20.0])
    names = settings["inputs"]
    stored = [np.load(out / "raw" / f"{name}.npz") for name in names]
    clean = torch.from_numpy(np.stack([s["clean"] for s in stored]))
    expected = NoiseModel("eld:SonyA7S2", ratio=20, clip=(0.0, 1.0))(clean, seed=4, offset=0)
    np.testing.assert_array_equal(np.stack([s["noisy"] for s in stored]), expected.noisy.numpy())


def test_shards_with_a_profile_regenerate_the_stored_noise(tmp_path):
    pytest.importorskip("webdataset")
    from cycleisp_fast.data.images import quantize
    from cycleisp_fast.pipelines.shards import SyntheticShards, read_shard

    out = tmp_path / "shards"
    args = ["synth", "-o", os.fspath(out), "--format", "webdataset", "--with-noisy", "--levels", "virtual:2"]
    assert cli.main(args + ["--ratio", "5,10", "--max-size", "32", "--shard-size", "4"]) == 0
    stored = {s["key"]: s for path in sorted(out.glob("0*.tar")) for s in read_shard(path)}
    for item in SyntheticShards(out, shuffle=False):
        assert item["meta"]["ratio"] == [5.0, 10.0] and item["meta"]["noise"] == "physical"
        as_stored = torch.from_numpy(quantize(item["noisy"], 16).astype(np.float32).transpose(2, 0, 1)) / 65535
        assert torch.equal(as_stored, stored[item["key"]]["noisy"])  # bit for bit what synth wrote


def test_calibrated_profile_picks_the_nearest_setting_per_gain(tmp_path):
    """A calibrated profile's per-setting tables (one row per calibrated K, unevenly spaced) are indexed by the
    setting nearest in log K, not LED's equal slices."""
    data = good_profile()
    gains = [0.5, 1.0, 2.0, 4.0, 8.0]
    data.update(K=[0.5, 8.0], color_bias=[[float(i)] * 4 for i in range(5)])
    data["read_tukey"]["lambda"] = [0.01 * i for i in range(5)]
    data["calibration"] = {"settings": [{"name": f"ISO{i}", "K": k} for i, k in enumerate(gains)]}
    profile = load_profile(write_profile(data, tmp_path / "cal.json"))
    params = profile.sample(2000, generator=torch.Generator().manual_seed(0))
    nearest = (params.gain.log()[:, None] - torch.tensor(gains, dtype=torch.float64).log()).abs().argmin(dim=1)
    assert torch.equal(params.bias[:, 0], nearest.double())
    assert torch.equal(params.read_shape, nearest.double() * 0.01)


def test_frames_made_by_the_op_calibrate_back_to_their_profile(tmp_path, capsys):
    """Round trip: dark and flat frames synthesised by the fused op from known parameters (two gains; Tukey read,
    row noise, colour bias; rounded to integer DN like an ADC, black level 512) -> ``cycleisp-fast calibrate`` ->
    the gain, Tukey shape and scale, row sigma and colour bias come back."""
    from cycleisp_fast.ops import bayer_unpack, physical_noise

    truth = {"ISO400": (1.0, -0.1, 2.0, 0.5), "ISO1600": (4.0, 0.1, 5.0, 1.2)}  # K, lambda, tukey sigma, row sigma
    bias = torch.tensor([[0.5, -0.3, 0.2, 1.0]])
    black, white, shape = 512, 16383, (1, 4, 192, 128)
    for index, (name, (gain, lam, sigma, row)) in enumerate(truth.items()):
        kw = dict(read_scale=sigma, read_shape=lam, row_scale=row, bias=bias, bayer_pattern="RGGB")

        def save(folder, stem, electrons, offset):
            x = torch.full(shape, gain * electrons)  # DN above black (scale 1)
            y = physical_noise(
                x, gain, components="ptrc" if electrons else "trc", seed=100 + index, offset=offset, **kw
            )
            mosaic = (bayer_unpack(y, "RGGB")[0, 0] + black).round().clamp(0, white)
            (tmp_path / name / folder).mkdir(parents=True, exist_ok=True)
            np.save(tmp_path / name / folder / f"{stem}.npy", mosaic.numpy().astype(np.uint16))

        for k in range(4):
            save("dark", f"dark{k}", 0.0, k)
        for level, electrons in enumerate((200.0, 800.0, 2400.0)):
            for k in range(2):
                save(f"flat/e{electrons:.0f}", f"flat{k}", electrons, 10 + 2 * level + k)
    out = tmp_path / "op.json"
    code = cli.main(["calibrate", str(tmp_path), "-o", str(out), "--black-level", "512", "--white-level", "16383"])
    assert code == 0, capsys.readouterr().err
    found = {s["name"]: s for s in json.loads(out.read_text())["calibration"]["settings"]}
    for name, (gain, lam, sigma, row) in truth.items():
        got = found[name]
        assert got["K"] == pytest.approx(gain, rel=0.05)
        assert got["tukey_lambda"] == pytest.approx(lam, abs=0.03)
        assert got["tukey_sigma"] == pytest.approx(sigma, rel=0.05)
        assert got["row_sigma"] == pytest.approx(row, rel=0.15)
        np.testing.assert_allclose(got["color_bias"], bias[0].numpy(), atol=0.15)
    assert load_profile(out).components == "pgtrqc"


def test_dark_shading_of_a_calibrated_profile_is_added_per_gain(tmp_path):
    """A profile with a dark-shading file: the noisy image gains (intercept + slope K) / scale over a window of the
    frame (the op's ``dark_shading``, before the clip); the op with that frame given directly agrees."""
    from cycleisp_fast.ops import physical_noise

    data = good_profile()
    data["dark_shading"] = {"file": "cam.dark_shading.npz"}
    rng = np.random.default_rng(0)
    intercept, slope = rng.normal(0, 2, (4, 12, 10)), rng.normal(0, 0.5, (4, 12, 10))
    np.savez(tmp_path / "cam.dark_shading.npz", intercept=intercept, slope=slope)
    path = write_profile(data, tmp_path / "cam.json")
    clean = torch.full((3, 4, 8, 6), 0.2, dtype=torch.float64)
    with_shading = PhysicalNoiseModel(path, ratio=10, components="p")(clean, seed=2)
    without = PhysicalNoiseModel(path, ratio=10, components="p", dark_shading=False)(clean, seed=2)
    scale = 15583.0 / 10
    added = ((with_shading.noisy - without.noisy) * scale).numpy()
    for n in range(3):  # a window of intercept + slope * K, the image's own gain
        frame = intercept + slope * float(with_shading.params.gain[n])
        windows = [frame[:, top : top + 8, left : left + 6] for top in range(5) for left in range(5)]
        assert any(np.allclose(added[n], w, atol=1e-8) for w in windows)
    shading = torch.from_numpy(frame[:, :8, :6]).expand(3, 4, 8, 6)
    direct = physical_noise(clean, 1.0, scale=scale, components="p", dark_shading=shading, seed=5, clip=(None, 0.2))
    plain = physical_noise(clean, 1.0, scale=scale, components="p", seed=5)
    torch.testing.assert_close(direct, (plain + shading / scale).clamp(max=0.2))
    small = PhysicalNoiseModel(path, ratio=10)
    with pytest.raises(ValueError, match="smaller than the packed images 16x6"):
        small(torch.zeros(1, 4, 16, 6), seed=0)
    (tmp_path / "cam.dark_shading.npz").write_bytes(b"broken")
    with pytest.raises(ProfileError, match="not a dark-shading file"):
        PhysicalNoiseModel(path)(clean, seed=0)
