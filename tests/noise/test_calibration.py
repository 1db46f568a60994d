"""``cycleisp-fast calibrate`` and cycleisp_fast.noise.calibration against frames synthesised here, with a generator
of its own (numpy and scipy.stats.tukeylambda, nothing of the package), from known profiles: the calibration must
recover the gain, read noise (Gaussian sigma, Tukey shape and scale), row noise, colour bias, dark shading and the
log-linear fits across settings; bad inputs must fail naming the files, before anything is written."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
from dng_files import write_dng
from scipy.stats import tukeylambda

from cycleisp_fast import cli
from cycleisp_fast.noise import calibration
from cycleisp_fast.noise.profiles import load_profile

BLACK = 512
WHITE = 16383
SHAPE = (768, 256)  # 384 rows per plane: the colour bias (a mean over rows with row noise) to ~0.03 DN
DARKS = 6
EXPOSURES = (300, 1000, 3000, 6000)  # electrons (before the plane factors and the vignetting)
PLANE_FACTORS = (0.6, 1.0, 1.0, 0.8)  # the light's colour: R, Gr, Gb, B


@dataclass
class Setting:
    """The truth of one ISO setting."""

    name: str
    K: float
    lam: float
    tukey_sigma: float
    row_sigma: float
    bias: tuple  # R, Gr, Gb, B (DN above the black level)

    @property
    def read_sigma(self) -> float:
        return float(tukeylambda.std(self.lam, scale=self.tukey_sigma))


def log_linear(K: float, slope: float, bias: float) -> float:
    return math.exp(slope * math.log(K) + bias)


TUKEY_SLOPE, TUKEY_BIAS = 0.8, math.log(4.0)
ROW_SLOPE, ROW_BIAS = 0.7, math.log(0.6)
SETTINGS = [
    Setting(
        name,
        K,
        lam,
        log_linear(K, TUKEY_SLOPE, TUKEY_BIAS),
        log_linear(K, ROW_SLOPE, ROW_BIAS),
        tuple(b * (1 + 0.5 * i) for b in (0.6, -0.3, 0.2, -0.5)),
    )
    for i, (name, K, lam) in enumerate([("ISO1600", 2.0, 0.1), ("ISO400", 0.5, -0.1), ("ISO800", 1.0, 0.0)])
]


def colour_layout(pattern: str) -> np.ndarray:
    """``(2, 2)`` index into (R, Gr, Gb, B) of each position of ``pattern``'s block (Gr: the green on R's row)."""
    letters = np.array(list(pattern)).reshape(2, 2)
    red_row = int(np.argwhere(letters == "R")[0][0])
    layout = np.empty((2, 2), dtype=int)
    for y in range(2):
        for x in range(2):
            letter = letters[y, x]
            layout[y, x] = {"R": 0, "B": 3}.get(letter, 1 if y == red_row else 2)
    return layout


def per_colour(values, pattern: str, shape) -> np.ndarray:
    """Full-resolution map of four per-colour values (R, Gr, Gb, B) laid out as ``pattern``."""
    block = np.asarray(values, dtype=np.float64)[colour_layout(pattern)]
    return np.tile(block, (shape[0] // 2, shape[1] // 2))


def vignette(shape) -> np.ndarray:
    y, x = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    return 1.0 - 0.15 * (x**2 + y**2)


def frame(rng, setting: Setting, *, shape=SHAPE, pattern="RGGB", electrons=None, black=BLACK, extra=None):
    """One uint16 frame: ``K * Poisson(electrons) + TukeyLambda + row + black + bias (+ extra)``, rounded, clipped."""
    dn = tukeylambda.rvs(setting.lam, scale=setting.tukey_sigma, size=shape, random_state=rng)
    dn += rng.normal(0.0, setting.row_sigma, (shape[0], 1))
    dn += per_colour(setting.bias, pattern, shape) + (
        black if np.isscalar(black) else per_colour(black, pattern, shape)
    )
    if electrons is not None:
        dn += setting.K * rng.poisson(electrons)
    if extra is not None:
        dn += extra
    return np.clip(np.round(dn), 0, WHITE).astype(np.uint16)


def flat_electrons(level: float, pattern: str, shape) -> np.ndarray:
    return level * per_colour(PLANE_FACTORS, pattern, shape) * vignette(shape)


def write_npy_setting(root, setting: Setting, seed: int, *, exposures=EXPOSURES, darks=DARKS, shape=SHAPE):
    rng = np.random.default_rng(seed)
    (root / setting.name / "dark").mkdir(parents=True)
    (root / setting.name / "flat").mkdir(parents=True)
    for index in range(darks):
        np.save(root / setting.name / "dark" / f"dark{index:02d}.npy", frame(rng, setting, shape=shape))
    for level in exposures:
        for copy in range(2):
            electrons = flat_electrons(level, "RGGB", shape)
            np.save(
                root / setting.name / "flat" / f"flat{level:05d}_{copy}.npy", frame(rng, setting, electrons=electrons)
            )


def write_frame_dng(path, mosaic: np.ndarray, pattern: str, black) -> None:
    """An uncompressed DNG of the uint16 mosaic at ``path``, with per-position black levels (no colour tags)."""
    write_dng(path.parent, mosaic, pattern, name=path.stem, black=black, neutral=None, color_matrix=None, white=WHITE)


def calibrate(argv, capsys) -> tuple[int, str, str]:
    code = cli.main(["calibrate", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------ recovery


@pytest.fixture(scope="module")
def three_isos(tmp_path_factory):
    """Three ISO settings as .npy frames (RGGB), one extra saturated flat pair at ISO1600; calibrated once."""
    root = tmp_path_factory.mktemp("calib")
    for seed, setting in enumerate(SETTINGS):
        write_npy_setting(root, setting, seed)
    rng = np.random.default_rng(99)
    saturated = SETTINGS[0]
    for copy in range(2):
        electrons = flat_electrons(9000, "RGGB", SHAPE)
        np.save(root / saturated.name / "flat" / f"bright_{copy}.npy", frame(rng, saturated, electrons=electrons))
    out = tmp_path_factory.mktemp("out") / "cam.json"
    return root, out


def test_three_isos_recover_the_profile(three_isos, capsys, tmp_path):
    root, out = three_isos
    plots = tmp_path / "plots"
    argv = [root, "-o", out, "--camera", "Sim", "--black-level", BLACK, "--white-level", WHITE, "--plots", plots]
    code, stdout, stderr = calibrate(argv, capsys)
    assert code == 0, stderr
    assert "warning" in stderr and "bright_0.npy" in stderr and "bright_1.npy" in stderr  # saturated, left out
    profile = json.loads(out.read_text())
    assert profile["format"] == "cycleisp_fast.noise_profile/1" and profile["camera"] == "Sim"
    assert profile["source"].startswith(f"calibrated by cycleisp-fast calibrate from {root} on ")
    assert profile["black_level"] == BLACK and profile["saturation"] == WHITE - BLACK
    assert profile["quantization_step"] == 1.0 and "dark_shading" not in profile  # 6 dark frames: no shading

    truth = sorted(SETTINGS, key=lambda s: s.K)
    found = profile["calibration"]["settings"]
    assert [s["name"] for s in found] == [s.name for s in truth]  # ordered by K
    for setting, got in zip(truth, found):
        assert got["K"] == pytest.approx(setting.K, rel=0.05)
        assert got["read_sigma"] == pytest.approx(setting.read_sigma, rel=0.05)
        assert got["tukey_sigma"] == pytest.approx(setting.tukey_sigma, rel=0.05)
        assert got["tukey_lambda"] == pytest.approx(setting.lam, abs=0.03)
        assert got["row_sigma"] == pytest.approx(setting.row_sigma, rel=0.15)
        np.testing.assert_allclose(got["color_bias"], setting.bias, atol=0.1)
    assert profile["K"] == pytest.approx([truth[0].K, truth[-1].K], rel=0.05)
    assert profile["read_tukey"]["lambda"] == [s["tukey_lambda"] for s in found]
    assert profile["color_bias"] == [s["color_bias"] for s in found]
    # the scales were drawn log-linear in K: the fits find the slopes and biases, with small residuals
    assert profile["read_tukey"]["slope"] == pytest.approx(TUKEY_SLOPE, abs=0.05)
    assert profile["read_tukey"]["bias"] == pytest.approx(TUKEY_BIAS, abs=0.05)
    assert profile["read_tukey"]["sigma"] < 0.05
    assert profile["row"]["slope"] == pytest.approx(ROW_SLOPE, abs=0.15)
    assert profile["row"]["bias"] == pytest.approx(ROW_BIAS, abs=0.15)
    gaussian = calibration.fit_log_linear([s.K for s in truth], [s.read_sigma for s in truth])
    assert profile["read_gaussian"]["slope"] == pytest.approx(gaussian["slope"], abs=0.05)
    assert sorted(p.name for p in plots.iterdir()) == sorted(
        ["photon_transfer.png", "ppcc.png", "row_spectrum.png", "sigma_vs_K.png"]
    )
    assert [p.name for p in out.parent.iterdir()] == ["cam.json"]  # no temporary file left
    loaded = load_profile(out)  # the sampler's loader takes the profile: every component, the per-setting tables
    assert loaded.camera == "Sim" and loaded.components == "pgtrqc"
    assert loaded.gain_range == tuple(profile["K"]) and loaded.saturation == WHITE - BLACK
    assert list(loaded.tukey_shapes) == profile["read_tukey"]["lambda"] and len(loaded.color_bias) == 3


def test_dng_frames_any_pattern_one_setting(tmp_path, capsys):
    """Real DNG files (GBRG, a different black level per CFA position) of one setting, ROOT being that setting."""
    pattern, black = "GBRG", (508, 512, 516, 520)  # BlackLevel by position (0,0), (0,1), (1,0), (1,1)
    setting = Setting("ISO3200", 1.5, -0.05, 5.0, 0.8, (0.5, -0.4, 0.3, -0.2))
    shape = (512, 256)
    by_colour = np.empty(4)  # the black level of R, Gr, Gb, B
    by_colour[colour_layout(pattern).ravel()] = black
    rng = np.random.default_rng(5)
    root = tmp_path / "ISO3200"
    (root / "dark").mkdir(parents=True)
    for index in range(4):
        write_frame_dng(
            root / "dark" / f"d{index}.dng",
            frame(rng, setting, shape=shape, pattern=pattern, black=by_colour),
            pattern,
            black,
        )
    for level in (500, 2000, 6000):
        folder = root / "flat" / f"exp{level}"  # grouped by sub-folder
        folder.mkdir(parents=True)
        for copy in range(2):
            electrons = flat_electrons(level, pattern, shape)
            mosaic = frame(rng, setting, shape=shape, pattern=pattern, black=by_colour, electrons=electrons)
            write_frame_dng(folder / f"f{copy}.dng", mosaic, pattern, black)
    out = tmp_path / "dng.json"
    code, stdout, stderr = calibrate([root, "-o", out], capsys)
    assert code == 0, stderr
    profile = json.loads(out.read_text())
    assert profile["camera"] == "ISO3200" and profile["black_level"] == pytest.approx(np.mean(black))
    (got,) = profile["calibration"]["settings"]
    assert got["K"] == pytest.approx(setting.K, rel=0.05)
    assert got["read_sigma"] == pytest.approx(setting.read_sigma, rel=0.05)
    assert got["tukey_lambda"] == pytest.approx(setting.lam, abs=0.03)
    assert got["row_sigma"] == pytest.approx(setting.row_sigma, rel=0.15)
    np.testing.assert_allclose(got["color_bias"], setting.bias, atol=0.1)  # in R, Gr, Gb, B order
    for key, value in [
        ("read_gaussian", got["read_sigma"]),
        ("read_tukey", got["tukey_sigma"]),
        ("row", got["row_sigma"]),
    ]:
        assert profile[key]["slope"] == 0 and profile[key]["sigma"] == 0
        assert profile[key]["bias"] == pytest.approx(math.log(value))
    assert profile["K"] == [got["K"], got["K"]]
    loaded = load_profile(out)
    assert loaded.gain_range == (got["K"], got["K"]) and loaded.tukey_shapes == (got["tukey_lambda"],)


def test_dark_shading_is_measured_and_kept_out_of_the_read_noise(tmp_path, capsys):
    """16 dark frames per setting: the per-pixel shading ``a + b * K`` is fitted, and the read noise is the
    temporal noise around it (the shading's variance is larger than the read noise's)."""
    shape = (128, 128)
    rng = np.random.default_rng(11)
    intercept, slope = rng.normal(0, 3.0, shape), rng.normal(0, 3.0, shape)
    truths = [
        Setting("ISO100", 1.0, 0.14, 2.0, 0.5, (0.2, 0.1, 0.0, -0.1)),
        Setting("ISO300", 3.0, 0.14, 2.0, 0.5, (0.2, 0.1, 0.0, -0.1)),
    ]
    for setting in truths:
        (tmp_path / "root" / setting.name / "dark").mkdir(parents=True)
        (tmp_path / "root" / setting.name / "flat").mkdir(parents=True)
        shading = intercept + slope * setting.K
        for index in range(16):
            mosaic = frame(rng, setting, shape=shape, extra=shading)
            np.save(tmp_path / "root" / setting.name / "dark" / f"d{index:02d}.npy", mosaic)
        for level in (500, 2000):
            for copy in range(2):
                mosaic = frame(rng, setting, shape=shape, electrons=flat_electrons(level, "RGGB", shape), extra=shading)
                np.save(tmp_path / "root" / setting.name / "flat" / f"f{level}_{copy}.npy", mosaic)
    out = tmp_path / "out" / "shaded.json"
    code, stdout, stderr = calibrate(
        [tmp_path / "root", "-o", out, "--black-level", BLACK, "--white-level", WHITE], capsys
    )
    assert code == 0, stderr
    profile = json.loads(out.read_text())
    assert profile["dark_shading"] == {"file": "shaded.dark_shading.npz"}
    with np.load(out.parent / "shaded.dark_shading.npz") as arrays:
        fitted_intercept, fitted_slope = arrays["intercept"], arrays["slope"]
    loaded = load_profile(out).dark_shading()  # what the sampler adds
    assert np.array_equal(loaded[0].numpy(), fitted_intercept) and np.array_equal(loaded[1].numpy(), fitted_slope)
    assert fitted_intercept.shape == fitted_slope.shape == (4, 64, 64)

    def packed(full):  # (R, Gr, Gb, B) planes of an RGGB map, minus each plane's mean (the shading's definition)
        planes = np.stack([full[0::2, 0::2], full[0::2, 1::2], full[1::2, 0::2], full[1::2, 1::2]])
        return planes - planes.mean(axis=(1, 2), keepdims=True)

    assert np.corrcoef(fitted_intercept.ravel(), packed(intercept).ravel())[0, 1] > 0.9
    assert np.corrcoef(fitted_slope.ravel(), packed(slope).ravel())[0, 1] > 0.95
    for got, setting in zip(profile["calibration"]["settings"], truths):
        assert got["read_sigma"] == pytest.approx(setting.read_sigma, rel=0.05)
        assert got["K"] == pytest.approx(setting.K, rel=0.05)


def test_fit_ppcc_and_gain_directly():
    rng = np.random.default_rng(3)
    for lam in (-0.2, 0.0, 0.2):
        fit = calibration.fit_ppcc(tukeylambda.rvs(lam, scale=3.0, size=100_000, random_state=rng))
        assert fit.lam == pytest.approx(lam, abs=0.03) and fit.sigma == pytest.approx(3.0, rel=0.03)
        assert fit.curve.shape == (101, 2) and fit.curve[:, 1].max() <= 1.0
    gaussian = calibration.fit_ppcc(rng.normal(0, 2.0, 100_000))
    assert gaussian.lam == pytest.approx(0.14, abs=0.03)  # Tukey lambda 0.14 is nearly Gaussian
    with pytest.raises(calibration.CalibrationError, match="not all equal"):
        calibration.fit_ppcc(np.ones(10))


def test_python_api_on_arrays_of_another_pattern():
    """calibrate() on in-memory GRBG mosaics (FrameSet.from_arrays): two settings, the profile ordered by K."""
    shape, pattern = (256, 128), "GRBG"
    rng = np.random.default_rng(8)
    truths = [Setting("high", 3.0, 0.05, 6.0, 1.0, (1, 2, 3, 4)), Setting("low", 1.0, 0.05, 3.0, 0.5, (4, 3, 2, 1))]
    iso_sets = {}
    for setting in truths:
        darks = [frame(rng, setting, shape=shape, pattern=pattern) for _ in range(3)]
        flats = [
            frame(rng, setting, shape=shape, pattern=pattern, electrons=flat_electrons(level, pattern, shape))
            for level in (400, 400, 1600, 1600, 3000, 3000)
        ]
        iso_sets[setting.name] = tuple(
            calibration.FrameSet.from_arrays(arrays, pattern=pattern, black_level=BLACK, white_level=WHITE)
            for arrays in (darks, flats)
        )
    profile = calibration.calibrate(iso_sets, camera="api")
    assert [s["name"] for s in profile["calibration"]["settings"]] == ["low", "high"]
    for got, setting in zip(profile["calibration"]["settings"], truths[::-1]):
        assert got["K"] == pytest.approx(setting.K, rel=0.05)
        np.testing.assert_allclose(got["color_bias"], setting.bias, atol=0.15)
    assert profile["read_tukey"]["slope"] == pytest.approx(math.log(2) / math.log(3), abs=0.05)


# ------------------------------------------------------------------------------------------ bad input


SMALL = (64, 64)
QUIET = Setting("ISO100", 1.0, 0.0, 3.0, 0.5, (0, 0, 0, 0))


def small_setting(root, *, darks=2, exposures=(500, 2000), name="ISO100"):
    rng = np.random.default_rng(0)
    (root / name / "dark").mkdir(parents=True)
    (root / name / "flat").mkdir(parents=True)
    for index in range(darks):
        np.save(root / name / "dark" / f"d{index}.npy", frame(rng, QUIET, shape=SMALL))
    for level in exposures:
        for copy in range(2):
            mosaic = frame(rng, QUIET, shape=SMALL, electrons=flat_electrons(level, "RGGB", SMALL))
            np.save(root / name / "flat" / f"f{level}_{copy}.npy", mosaic)
    return root / name


def expect_error(tmp_path, capsys, *fragments, extra=()):
    out = tmp_path / "out" / "p.json"
    argv = [tmp_path / "root", "-o", out, "--black-level", BLACK, "--white-level", WHITE, *extra]
    code, stdout, stderr = calibrate(argv, capsys)
    assert code == 1 and stderr.startswith("cycleisp-fast calibrate: error: ") and stderr.count("\n") == 1, stderr
    for fragment in fragments:
        assert fragment in stderr, stderr
    assert not out.parent.exists() or not any(out.parent.iterdir())  # nothing written
    return stderr


def test_mixed_sizes_are_refused_naming_the_file(tmp_path, capsys):
    folder = small_setting(tmp_path / "root")
    np.save(folder / "dark" / "d2.npy", np.full((64, 72), BLACK, dtype=np.uint16))
    expect_error(tmp_path, capsys, "d2.npy", "64x72", "one size")


def test_too_few_dark_frames(tmp_path, capsys):
    small_setting(tmp_path / "root", darks=1)
    expect_error(tmp_path, capsys, "d0.npy", "at least 2")


def test_missing_folders(tmp_path, capsys):
    folder = small_setting(tmp_path / "root")
    for path in (folder / "flat").iterdir():
        path.unlink()
    (folder / "flat").rmdir()
    expect_error(tmp_path, capsys, str(folder), "no flat/")
    (tmp_path / "root" / "ISO100").rename(tmp_path / "elsewhere")
    expect_error(tmp_path, capsys, "holds no setting folders")


def test_saturated_and_single_exposure_flats(tmp_path, capsys):
    folder = small_setting(tmp_path / "root", exposures=(2000,))
    expect_error(tmp_path, capsys, "1 usable exposure level", "f2000_0.npy")
    rng = np.random.default_rng(1)
    for copy in range(2):  # a second exposure, all clipped: still one usable level, and a warning names it
        mosaic = frame(rng, QUIET, shape=SMALL, electrons=flat_electrons(30000, "RGGB", SMALL))
        np.save(folder / "flat" / f"hot_{copy}.npy", mosaic)
    out = tmp_path / "out" / "p.json"
    code = cli.main(
        ["calibrate", str(tmp_path / "root"), "-o", str(out), "--black-level", "512", "--white-level", str(WHITE)]
    )
    captured = capsys.readouterr()
    assert code == 1 and "warning" in captured.err and "hot_0.npy" in captured.err and "hot_1.npy" in captured.err
    assert "usable exposure level" in captured.err and not out.exists()
    with pytest.warns(UserWarning, match="hot_0.npy"):
        with pytest.raises(calibration.CalibrationError):
            paths = sorted((folder / "flat").iterdir())
            calibration.fit_gain([np.load(p) for p in paths], BLACK, WHITE, names=[p.name for p in paths])


def test_mixed_patterns_and_unreadable_files(tmp_path, capsys):
    folder = small_setting(tmp_path / "root")
    rng = np.random.default_rng(2)
    for index, pattern in enumerate(("RGGB", "GRBG")):
        (folder / "dark" / f"d{index}.npy").unlink()
        write_frame_dng(folder / "dark" / f"r{index}.dng", frame(rng, QUIET, shape=SMALL), pattern, (BLACK,) * 4)
    expect_error(tmp_path, capsys, "r0.dng", "r1.dng", "GRBG", "pattern")
    (folder / "dark" / "r1.dng").write_bytes(b"not a raw file at all")
    expect_error(tmp_path, capsys, "r1.dng")
    (folder / "dark" / "r1.dng").unlink()
    (folder / "dark" / "r0.dng").unlink()
    np.save(folder / "dark" / "d0.npy", frame(rng, QUIET, shape=SMALL))
    (folder / "dark" / "d1.npy").write_bytes(b"\x93NUMPY garbage")
    expect_error(tmp_path, capsys, "d1.npy", "cannot read")


def test_a_frame_of_another_iso_and_npy_without_levels(tmp_path, capsys):
    folder = small_setting(tmp_path / "root", darks=3)
    noisy = Setting("ISO6400", 1.0, 0.0, 12.0, 0.5, (0, 0, 0, 0))
    np.save(folder / "dark" / "d2.npy", frame(np.random.default_rng(4), noisy, shape=SMALL))
    expect_error(tmp_path, capsys, "d2.npy", "another setting")
    (folder / "dark" / "d2.npy").unlink()
    out = tmp_path / "out" / "p.json"
    code, stdout, stderr = calibrate([tmp_path / "root", "-o", out], capsys)
    assert code == 1 and "--black-level" in stderr and "d0.npy" in stderr and not out.exists()


def test_a_frame_whose_header_claims_more_than_the_file_holds(tmp_path, capsys):
    """A .npy header claiming a 10^6 x 10^6 mosaic over 64 bytes: refused naming the file, nothing allocated for it."""
    folder = small_setting(tmp_path / "root")
    with open(folder / "dark" / "d1.npy", "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<u2", "fortran_order": False, "shape": (10**6, 10**6)})
        handle.write(bytes(64))
    expect_error(tmp_path, capsys, "d1.npy", "cannot read the frame")
