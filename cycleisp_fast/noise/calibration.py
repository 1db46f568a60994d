"""Camera noise calibration in the style of ELD (Wei et al., CVPR 2020 / TPAMI 2021): from dark and flat-field
frames to a noise profile (``cycleisp_fast.noise_profile/1``, the JSON that ``cycleisp-fast calibrate`` writes).

The noise model is ``D = K * (I + N_p) + N_read + N_row + N_q + bias`` in raw units (DN): K the system gain (DN per
electron), N_p Poisson shot noise, N_read read noise (Gaussian, or Tukey lambda of shape ``lambda`` and scale
``sigma``), N_row one Gaussian offset per full-resolution sensor row, N_q uniform quantisation, ``bias`` the
black level plus a per-channel error (the colour bias).

* Dark (bias) frames, :func:`calibrate_dark`: per CFA plane, the mean minus the black level is the colour bias;
  with each plane's mean removed, the mean of each sensor row (both planes of the row) is that row's offset, whose
  variance less ``var_read / pixels_per_row`` is the row-noise variance; the rest, with the row offsets removed,
  is read noise: its standard deviation is the Gaussian read sigma and a probability-plot correlation
  coefficient (PPCC) fit of Tukey-lambda quantiles gives its shape and scale (:func:`fit_ppcc`). The quantisation
  variance ``step**2 / 12`` is taken out of both read sigmas (the profile models N_q separately).
* Dark shading: the per-pixel mean over the frames of a setting (planes' means removed). It is measured, and the
  read noise then measured on the frames minus it (the temporal noise only), when a setting has at least
  :data:`MIN_SHADING_FRAMES` dark frames; with fewer, the mean is too noisy to tell a fixed pattern from noise and
  the fixed pattern stays in the read noise.
* Flat fields, :func:`fit_gain`: the photon-transfer curve. For two flats of one exposure the variance of their
  difference over two is the temporal noise variance at their mean signal, ``K * signal + const`` (fixed patterns
  cancel in the difference); a least-squares line through every pair and CFA plane gives K as its slope.
* Across settings (ISOs), :func:`build_profile`: ``log sigma = slope * log K + bias`` fitted by least squares for
  the Gaussian read sigma, the Tukey scale and the row sigma, with the residual standard deviation as ``sigma``.

Frames are 2-D mosaics in any 2x2 Bayer pattern; every statistic is per plane in the canonical packed order
(R, Gr, Gb, B), Gr being the green on the red rows, after the crop unification of
:func:`cycleisp_fast.data.raw.unify_to_rggb` (so the dark shading lines up with the packed planes of
:func:`~cycleisp_fast.data.raw.read_raw`). Arithmetic is float64; the PPCC fit uses at most
:data:`MAX_PPCC_SAMPLES` samples, drawn with a fixed seed, so a 24 MP frame calibrates in seconds and a run is
reproducible.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> frames = [np.round(512 + rng.normal(0, 3, (64, 64))) for _ in range(2)]
    >>> stats = calibrate_dark(frames, 512)
    >>> round(stats.read_sigma, 1), abs(stats.tukey_lambda - 0.14) < 0.1, stats.color_bias.shape
    (3.0, True, (4,))
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np

PROFILE_FORMAT = "cycleisp_fast.noise_profile/1"
"""The ``format`` of the profiles :func:`build_profile` writes."""
PLANES = ("R", "Gr", "Gb", "B")
"""The canonical order of the CFA planes of every per-channel statistic (Gr: the green on the red rows)."""
MAX_PPCC_SAMPLES = 200_000
"""The most read-noise samples a PPCC fit uses (a deterministic random subset of the frames' pixels)."""
DEFAULT_LAMBDAS = np.round(np.linspace(-0.5, 0.5, 101), 10)
"""The Tukey-lambda shapes whose PPCC is computed (step 0.01); the best is then refined between its neighbours."""
MIN_SHADING_FRAMES = 16
"""Dark frames a setting needs for its dark shading to be measured (and taken out of its read noise)."""
MIXED_SETTING_RATIO = 2.0
"""A dark frame whose standard deviation differs from its folder's median by more than this factor is refused as
taken at another setting."""
SATURATED_FRACTION = 1e-4
"""A flat with more than this fraction of its pixels at or above the white level is saturated."""
SATURATED_MEAN = 0.9
"""A flat with a plane mean above this fraction of the range (white - black) is saturated (too near full well)."""
GROUP_TOLERANCE = 0.05
"""Flats grouped by level: a flat joins the current exposure group when its mean signal is within this relative
tolerance (plus :data:`GROUP_SLACK` DN) of the group's first (dimmest) flat."""
GROUP_SLACK = 0.5
LOG_FLOOR = 1e-3
"""A sigma measured as 0 (e.g. row noise below what the frames resolve) enters the log-linear fits as this, DN."""
FRAME_SUFFIXES = (".npy",)
"""Frame files besides camera RAW files (:data:`cycleisp_fast.data.raw.RAW_SUFFIXES`): 2-D numpy mosaics."""

PathLike = Union[str, os.PathLike]


class CalibrationError(ValueError):
    """Frames that cannot be calibrated together (mixed sizes, patterns or settings; too few frames; saturated or
    missing flats; a folder missing). The message names the files or folder and says what was expected."""


# --------------------------------------------------------------------------------------------------- frames


@dataclass(frozen=True, eq=False)
class FrameSet:
    """Frames of one kind (dark or flat) of one setting, as read by :func:`read_frames`.

    Attributes:
        mosaics: ``(H, W)`` arrays, each unified to RGGB by cropping (:func:`cycleisp_fast.data.raw.unify_to_rggb`),
            raw units, the dtype read (uint16 for RAW files); all of one shape.
        names: what names each frame in messages (its path).
        pattern: the frames' own CFA pattern before unification, e.g. ``"GRBG"``.
        black_level: ``(4,)`` float64 black level of the planes (R, Gr, Gb, B).
        white_level: the saturation level, raw units (None: unknown, for dark frames given as arrays).
        groups: exposure label of each frame (flats in ``flat/<exposure>/`` sub-folders), or None.
    """

    mosaics: list
    names: list
    pattern: str
    black_level: np.ndarray
    white_level: Optional[float] = None
    groups: Optional[list] = None

    @classmethod
    def from_arrays(
        cls,
        arrays: Sequence[np.ndarray],
        *,
        pattern: str = "RGGB",
        black_level: Union[float, Sequence[float]],
        white_level: Optional[float] = None,
        names: Optional[Sequence[str]] = None,
        groups: Optional[Sequence[str]] = None,
    ) -> "FrameSet":
        """A FrameSet of in-memory mosaics in ``pattern`` (unified to RGGB here; checked as :func:`read_frames`).

        Example: ``FrameSet.from_arrays([a, b], pattern="GRBG", black_level=512, white_level=16383)``."""
        names = [f"frame {index}" for index in range(len(arrays))] if names is None else list(names)
        mosaics = [_unify(np.asarray(array), pattern, name) for array, name in zip(arrays, names)]
        _check_same_shape(mosaics, names, "the frames")
        return cls(mosaics, names, pattern, _black4(black_level), white_level, None if groups is None else list(groups))

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the unified mosaics."""
        return tuple(self.mosaics[0].shape) if self.mosaics else (0, 0)


def is_frame_file(path: PathLike) -> bool:
    """Whether ``path`` names a frame: a ``.npy`` mosaic or a camera RAW file (by suffix; hidden files are not)."""
    from cycleisp_fast.data.raw import is_raw_file

    path = Path(path)
    return not path.name.startswith(".") and (path.suffix.lower() in FRAME_SUFFIXES or is_raw_file(path))


def read_frames(
    paths: Sequence[PathLike],
    *,
    pattern: Optional[str] = None,
    black_level: Union[None, float, Sequence[float]] = None,
    white_level: Optional[float] = None,
    groups: Optional[Sequence[str]] = None,
) -> FrameSet:
    """Reads frames (camera RAW files via rawpy, or ``.npy`` 2-D mosaics) into a :class:`FrameSet`.

    RAW files give their own pattern (LibRaw's ``raw_pattern`` and ``color_desc``), black levels
    (``black_level_per_channel``) and white level; ``.npy`` mosaics take ``pattern`` (default RGGB), and need
    ``black_level``. A ``black_level``/``white_level`` given overrides the files'; a ``pattern`` given must match
    theirs.

    Args:
        paths: the files, at least one.
        pattern: CFA pattern of ``.npy`` frames: ``"RGGB" | "BGGR" | "GRBG" | "GBRG"``.
        black_level: one value, or ``(R, Gr, Gb, B)``.
        white_level: the saturation level.
        groups: an exposure label per path (flats), or None.

    Raises:
        FileNotFoundError: a file is missing.
        DataFileError: a file cannot be read or holds no 2-D mosaic.
        CalibrationError: the frames differ in size, pattern, black or white level; a ``.npy`` frame has no black
            level; no paths.
    """
    from cycleisp_fast.data.files import DataFileError, describe_read_error
    from cycleisp_fast.data.raw import read_sensor

    paths = [Path(path) for path in paths]
    if not paths:
        raise CalibrationError("no frames to read")
    mosaics, patterns, blacks, whites = [], [], [], []
    for path in paths:
        if path.suffix.lower() in FRAME_SUFFIXES:
            if not path.is_file():
                raise FileNotFoundError(f"frame {path} does not exist")
            try:  # memory-mapped first: a header that claims more data than the file holds fails here, unallocated
                array = np.load(path, allow_pickle=False, mmap_mode="r")
            except (OSError, ValueError, EOFError) as error:
                raise DataFileError(f"cannot read the frame {path}: {describe_read_error(error)}") from error
            if array.ndim != 2 or not (
                np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
            ):
                raise DataFileError(
                    f"frame {path} holds a {array.dtype} array of shape {array.shape}; expected a 2-D (H, W) "
                    "mosaic of numbers"
                )
            own_pattern = pattern or "RGGB"
            mosaics.append(_unify(np.array(array), own_pattern, str(path)))
            patterns.append(own_pattern)
            if black_level is None:
                raise CalibrationError(
                    f"frame {path} is a .npy array, which carries no black level: give it (--black-level)"
                )
            blacks.append(_black4(black_level))
            whites.append(white_level)
        else:
            sensor = read_sensor(path)
            if pattern is not None and sensor.pattern != pattern:
                raise CalibrationError(
                    f"RAW file {path} has the CFA pattern {sensor.pattern}, not the {pattern} asked for (--pattern)"
                )
            mosaics.append(sensor.mosaic)
            patterns.append(sensor.pattern)
            blacks.append(
                _black4(black_level) if black_level is not None else np.asarray(sensor.black_level, np.float64)
            )
            whites.append(float(white_level) if white_level is not None else sensor.white_level)
    names = [str(path) for path in paths]
    _check_all_equal(patterns, names, "CFA pattern")
    _check_same_shape(mosaics, names, "the frames")
    _check_all_equal([tuple(black) for black in blacks], names, "black level")
    _check_all_equal(whites, names, "white level")
    return FrameSet(mosaics, names, patterns[0], blacks[0], whites[0], None if groups is None else list(groups))


def _unify(array: np.ndarray, pattern: str, name: str) -> np.ndarray:
    """``array`` unified to RGGB by cropping; CalibrationError naming ``name`` when it is no 2-D mosaic."""
    from cycleisp_fast.data.raw import unify_to_rggb

    if array.ndim != 2:
        raise CalibrationError(f"{name} has shape {tuple(array.shape)}; expected a 2-D (H, W) mosaic")
    try:
        unified, _ = unify_to_rggb(array, pattern)
    except ValueError as error:
        raise CalibrationError(f"{name}: {error}") from error
    return unified


def _black4(black_level: Union[float, Sequence[float]]) -> np.ndarray:
    """A scalar or four black levels as ``(4,)`` float64 (R, Gr, Gb, B)."""
    black = np.asarray(black_level, dtype=np.float64).ravel()
    if black.size == 1:
        black = np.repeat(black, 4)
    if black.size != 4 or not np.all(np.isfinite(black)):
        raise CalibrationError(f"a black level is one number or four (R, Gr, Gb, B), got {black_level!r}")
    return black


def _check_same_shape(mosaics: Sequence[np.ndarray], names: Sequence[str], what: str) -> None:
    """CalibrationError naming the frames whose (unified) shape is not the first frame's."""
    odd = [name for mosaic, name in zip(mosaics, names) if mosaic.shape != mosaics[0].shape]
    if odd:
        first = f"{mosaics[0].shape[0]}x{mosaics[0].shape[1]}"
        raise CalibrationError(
            f"{what} must all have one size: {names[0]} is {first} (as unified to RGGB) but "
            + ", ".join(
                f"{name} is {m.shape[0]}x{m.shape[1]}" for m, name in zip(mosaics, names) if m.shape != mosaics[0].shape
            )
        )


def _check_all_equal(values: Sequence, names: Sequence[str], what: str) -> None:
    """CalibrationError naming the frames whose ``what`` differs from the first frame's."""
    odd = [f"{name} has {value}" for value, name in zip(values, names) if value != values[0]]
    if odd:
        raise CalibrationError(f"frames of different {what}s: {names[0]} has {values[0]} but " + ", ".join(odd[:5]))


def pack(mosaic: np.ndarray) -> np.ndarray:
    """``(H, W)`` RGGB mosaic (H, W even) -> ``(4, H/2, W/2)`` view of its planes (R, Gr, Gb, B).

    Example:
        >>> pack(np.arange(16).reshape(4, 4))[:, 0, 0].tolist()
        [0, 1, 4, 5]
    """
    height, width = mosaic.shape
    return mosaic.reshape(height // 2, 2, width // 2, 2).transpose(1, 3, 0, 2).reshape(4, height // 2, width // 2)


def _plane_means(mosaic: np.ndarray) -> np.ndarray:
    """``(4,)`` float64 mean of each plane of an RGGB mosaic."""
    return pack(mosaic).mean(axis=(1, 2), dtype=np.float64)


def _centred(mosaic: np.ndarray, means: np.ndarray) -> np.ndarray:
    """The mosaic as float64 with each plane's ``means`` subtracted: ``(H, W)``."""
    return mosaic.astype(np.float64) - np.tile(means.reshape(2, 2), (mosaic.shape[0] // 2, mosaic.shape[1] // 2))


def quantization_step(mosaic: np.ndarray, max_samples: int = 100_000) -> float:
    """The step between the levels a mosaic's values take: the greatest common divisor of their differences for
    integer values (1 for ordinary RAW data, 4 for 12-bit data stored shifted by 2 bits), 0 for values that are
    not all integers (no quantisation seen).

    Example:
        >>> quantization_step(np.array([[512, 516], [520, 532]])), quantization_step(np.array([[0.5, 1.25]]))
        (4.0, 0.0)
    """
    values = _subsample(np.asarray(mosaic).ravel(), max_samples, seed=0).astype(np.float64)
    if not np.all(values == np.round(values)):
        return 0.0
    integers = (values - values.min()).astype(np.int64)
    step = int(np.gcd.reduce(integers)) if integers.size else 0
    return float(step or 1)


def _subsample(values: np.ndarray, count: int, seed: int) -> np.ndarray:
    """At most ``count`` of the 1-D ``values``, chosen without replacement by a generator seeded with ``seed``."""
    if values.size <= count:
        return values
    return values[np.sort(np.random.default_rng(seed).choice(values.size, count, replace=False))]


# ------------------------------------------------------------------------------------------------------ PPCC


def tukey_lambda_ppf(p: np.ndarray, lam: float) -> np.ndarray:
    """Quantiles of the standard Tukey-lambda distribution: ``(p**lam - (1 - p)**lam) / lam``, the logistic
    ``log(p / (1 - p))`` at ``lam = 0`` (as ``scipy.stats.tukeylambda.ppf``).

    Example:
        >>> tukey_lambda_ppf(np.array([0.25, 0.5]), 1.0).tolist()
        [-0.5, 0.0]
    """
    p = np.asarray(p, dtype=np.float64)
    if abs(lam) < 1e-9:
        return np.log(p) - np.log1p(-p)
    return (p**lam - (1.0 - p) ** lam) / lam


def plotting_positions(n: int) -> np.ndarray:
    """Filliben's order-statistic medians for ``n`` samples (the probability plot positions of
    ``scipy.stats.probplot``): ``(i - 0.3175) / (n + 0.365)`` with ``0.5 ** (1/n)`` at the top, its complement at
    the bottom."""
    positions = (np.arange(1, n + 1, dtype=np.float64) - 0.3175) / (n + 0.365)
    positions[-1] = 0.5 ** (1.0 / n)
    positions[0] = 1.0 - positions[-1]
    return positions


class PPCCFit(NamedTuple):
    """A Tukey-lambda probability-plot fit (:func:`fit_ppcc`).

    Attributes:
        lam: the shape of highest correlation (refined between grid points).
        sigma: the scale: the slope of the sorted samples against the quantiles of that shape.
        curve: ``(L, 2)`` rows ``(lambda, correlation)`` over the grid.
    """

    lam: float
    sigma: float
    curve: np.ndarray


def fit_ppcc(samples: np.ndarray, lambdas: Optional[Sequence[float]] = None) -> PPCCFit:
    """Fits a Tukey-lambda distribution to ``samples`` by the probability-plot correlation coefficient.

    For each shape of ``lambdas`` the sorted samples are correlated with the Tukey-lambda quantiles at Filliben's
    plotting positions; the shape of highest correlation is refined between its grid neighbours (bounded Brent),
    and the scale is the least-squares slope of the samples against its quantiles.

    Args:
        samples: any shape, at least 3 finite values, not all equal (use at most a few 100k: the fit sorts them).
        lambdas: the grid (default :data:`DEFAULT_LAMBDAS`, -0.5 to 0.5 by 0.01), increasing.

    Returns:
        :class:`PPCCFit` ``(lam, sigma, curve)``.

    Example:
        >>> from scipy.stats import tukeylambda
        >>> samples = tukeylambda.rvs(-0.1, scale=2.0, size=100_000, random_state=1)
        >>> lam, sigma, curve = fit_ppcc(samples)
        >>> round(lam, 2), round(sigma, 1), curve.shape
        (-0.1, 2.0, (101, 2))
    """
    from scipy.optimize import minimize_scalar

    grid = DEFAULT_LAMBDAS if lambdas is None else np.asarray(lambdas, dtype=np.float64)
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    if x.size < 3 or not np.all(np.isfinite(x)) or x[0] == x[-1]:
        raise CalibrationError(f"a PPCC fit needs at least 3 finite samples that are not all equal, got {x.size}")
    if grid.ndim != 1 or grid.size < 1 or np.any(np.diff(grid) <= 0):
        raise CalibrationError("the PPCC lambdas must be an increasing 1-D grid")
    positions = plotting_positions(x.size)
    centred = x - x.mean()
    norm = math.sqrt(float(centred @ centred))

    def correlation(lam: float) -> float:
        quantiles = tukey_lambda_ppf(positions, lam)
        quantiles = quantiles - quantiles.mean()
        return float(quantiles @ centred) / (math.sqrt(float(quantiles @ quantiles)) * norm)

    curve = np.array([correlation(lam) for lam in grid])
    best = int(np.argmax(curve))
    lam = float(grid[best])
    low, high = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    if high > low:
        refined = minimize_scalar(
            lambda value: -correlation(value), bounds=(low, high), method="bounded", options={"xatol": 1e-4}
        )
        if -refined.fun >= curve[best]:
            lam = float(refined.x)
    quantiles = tukey_lambda_ppf(positions, lam)
    quantiles = quantiles - quantiles.mean()
    sigma = float(quantiles @ centred) / float(quantiles @ quantiles)
    return PPCCFit(lam, sigma, np.stack([grid, curve], axis=1))


# ------------------------------------------------------------------------------------------------------ dark


@dataclass(frozen=True, eq=False)
class DarkStats:
    """The statistics of a setting's dark frames (:func:`calibrate_dark`), in DN.

    Attributes:
        n_frames: the frames.
        shape: ``(H, W)`` of the RGGB-unified frames.
        channel_mean: ``(4,)`` mean of each plane (R, Gr, Gb, B) over the frames.
        color_bias: ``(4,)`` ``channel_mean - black_level``.
        read_sigma: standard deviation of the read noise (row offsets removed, quantisation variance taken out).
        tukey_lambda: Tukey-lambda shape of the read noise (PPCC).
        tukey_sigma: Tukey-lambda scale of the read noise (PPCC slope, quantisation taken out).
        ppcc_curve: ``(L, 2)`` ``(lambda, correlation)``.
        row_sigma: standard deviation of the row offsets, read noise's share taken out (0 when none is left).
        row_spectrum: ``(H // 2 + 1,)`` mean ``|FFT(row means)|**2 / H`` (mean removed) over the frames.
        frame_std: ``(n_frames,)`` standard deviation of each frame (planes' means removed).
        quantization_step: the step of the frames' values (:func:`quantization_step`), DN.
        shading: ``(4, H/2, W/2)`` float32 dark shading (per-pixel mean minus each plane's mean), or None with
            fewer than ``min_shading_frames`` frames; when present, the read and row noise are the temporal noise
            around it.
    """

    n_frames: int
    shape: tuple
    channel_mean: np.ndarray
    color_bias: np.ndarray
    read_sigma: float
    tukey_lambda: float
    tukey_sigma: float
    ppcc_curve: np.ndarray
    row_sigma: float
    row_spectrum: np.ndarray
    frame_std: np.ndarray
    quantization_step: float
    shading: Optional[np.ndarray] = field(default=None, repr=False)


def calibrate_dark(
    frames: Sequence[np.ndarray],
    black_level: Union[float, Sequence[float]],
    pattern: str = "RGGB",
    *,
    names: Optional[Sequence[str]] = None,
    lambdas: Optional[Sequence[float]] = None,
    max_samples: int = MAX_PPCC_SAMPLES,
    step: Optional[float] = None,
    min_shading_frames: int = MIN_SHADING_FRAMES,
) -> DarkStats:
    """Read noise, row noise, colour bias and dark shading of one setting's dark (bias) frames.

    Args:
        frames: at least 2 ``(H, W)`` mosaics in ``pattern``, of one size, raw units.
        black_level: one value or ``(R, Gr, Gb, B)``, raw units.
        pattern: the frames' CFA pattern (they are unified to RGGB by cropping).
        names: a name per frame for messages (default ``frame <i>``).
        lambdas: the PPCC grid (default :data:`DEFAULT_LAMBDAS`).
        max_samples: the most read-noise samples the PPCC fit uses.
        step: the quantisation step, DN (default: found from the first frame, :func:`quantization_step`).
        min_shading_frames: frames needed to measure the dark shading (:data:`MIN_SHADING_FRAMES`).

    Returns:
        :class:`DarkStats`.

    Raises:
        CalibrationError: fewer than 2 frames, frames of mixed sizes, or frames whose standard deviation differs
            from the median by more than :data:`MIXED_SETTING_RATIO` (taken at another setting), named.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> rows = rng.normal(0, 1.0, (2, 256, 1))  # one offset per row and frame
        >>> frames = np.round(100.5 + rng.normal(0, 2.0, (2, 256, 256)) + rows)
        >>> stats = calibrate_dark(list(frames), 100)
        >>> round(stats.read_sigma, 1), round(stats.row_sigma, 1), bool(np.all(abs(stats.color_bias - 0.5) < 0.2))
        (2.0, 1.0, True)
    """
    names = [f"frame {index}" for index in range(len(frames))] if names is None else list(names)
    if len(frames) < 2:
        raise CalibrationError(
            f"dark frames: {len(frames)} given ({', '.join(names) or 'none'}); at least 2 are needed"
        )
    mosaics = [_unify(np.asarray(frame), pattern, name) for frame, name in zip(frames, names)]
    _check_same_shape(mosaics, names, "dark frames")
    black = _black4(black_level)
    count = len(mosaics)
    height, width = mosaics[0].shape
    means = np.stack([_plane_means(mosaic) for mosaic in mosaics])
    frame_std = np.array([_centred(mosaic, mean).std() for mosaic, mean in zip(mosaics, means)])
    _check_one_setting(frame_std, names)
    step = quantization_step(mosaics[0]) if step is None else float(step)

    shading = None
    if count >= min_shading_frames:
        shading = sum(_centred(mosaic, mean) for mosaic, mean in zip(mosaics, means)) / count
    row_vars, read_vars, spectra, samples = [], [], [], []
    per_frame = -(-max_samples // count)
    for index, (mosaic, mean) in enumerate(zip(mosaics, means)):
        noise = _centred(mosaic, mean)
        if shading is not None:  # temporal noise only: x - mean(x) has (1 - 1/n) of the variance
            noise = (noise - shading) * math.sqrt(count / (count - 1))
        row_means = noise.mean(axis=1)
        row_vars.append(
            row_means.var() * height / max(height - 2, 1)
        )  # the planes' means took the even/odd rows' means
        spectra.append(np.abs(np.fft.rfft(row_means - row_means.mean())) ** 2 / height)
        residual = noise - row_means[:, None]
        read_vars.append(residual.var() * width / (width - 1))
        samples.append(_subsample(residual.ravel(), per_frame, seed=index))
    read_var = float(np.mean(read_vars))
    row_var = max(float(np.mean(row_vars)) - read_var / width, 0.0)
    quantization_var = step**2 / 12.0
    samples = np.concatenate(samples)
    fit = fit_ppcc(samples, lambdas)
    tukey_share = max(1.0 - quantization_var / max(float(samples.var()), 1e-300), 0.0)
    channel_mean = means.mean(axis=0)
    return DarkStats(
        n_frames=count,
        shape=(height, width),
        channel_mean=channel_mean,
        color_bias=channel_mean - black,
        read_sigma=math.sqrt(max(read_var - quantization_var, 0.0)),
        tukey_lambda=fit.lam,
        tukey_sigma=fit.sigma * math.sqrt(tukey_share),
        ppcc_curve=fit.curve,
        row_sigma=math.sqrt(row_var),
        row_spectrum=np.mean(spectra, axis=0),
        frame_std=frame_std,
        quantization_step=step,
        shading=None if shading is None else pack(shading).astype(np.float32),
    )


def _check_one_setting(frame_std: np.ndarray, names: Sequence[str]) -> None:
    """CalibrationError naming the dark frames whose std is off the median by more than MIXED_SETTING_RATIO."""
    median = float(np.median(frame_std))
    odd = [
        f"{name} (std {std:.3g} DN)"
        for std, name in zip(frame_std, names)
        if not (median / MIXED_SETTING_RATIO <= std <= median * MIXED_SETTING_RATIO)
    ]
    if odd:
        raise CalibrationError(
            f"dark frames of another setting (ISO, gain or exposure): the noise of {', '.join(odd)} differs by more "
            f"than {MIXED_SETTING_RATIO:g}x from the median of the folder's frames ({median:.3g} DN); "
            "move them to their own setting's folder"
        )


# ------------------------------------------------------------------------------------------------------ gain


@dataclass(frozen=True, eq=False)
class GainFit:
    """The photon-transfer fit of one setting's flats (:func:`fit_gain`).

    Attributes:
        K: the system gain, DN per electron (the slope).
        intercept: the variance at zero signal, DN^2 (read and row noise).
        means: ``(P, 4)`` mean signal above black of each pair (rows) and plane (R, Gr, Gb, B), DN.
        variances: ``(P, 4)`` temporal variance at those means, DN^2.
        pairs: ``(P,)`` the two frames of each pair, ``"first + second"``.
        levels: ``(P,)`` the exposure group of each pair.
        dropped: the saturated frames left out.
    """

    K: float
    intercept: float
    means: np.ndarray
    variances: np.ndarray
    pairs: list
    levels: list
    dropped: list


def fit_gain(
    flats: Sequence[np.ndarray],
    black_level: Union[float, Sequence[float]],
    white_level: float,
    pattern: str = "RGGB",
    *,
    names: Optional[Sequence[str]] = None,
    groups: Optional[Sequence[str]] = None,
) -> GainFit:
    """The system gain K (DN per electron) from flat-field frames: the slope of the photon-transfer curve.

    Saturated flats (more than :data:`SATURATED_FRACTION` of their pixels at the white level, or a plane mean
    above :data:`SATURATED_MEAN` of the range) are dropped with a warning naming them. The rest are grouped by
    exposure: by ``groups`` when given, else by mean level (sorted; a flat within :data:`GROUP_TOLERANCE` of its
    group's dimmest joins it). Within a group, consecutive frames form pairs (a frame left over is unused); for each
    pair and plane, ``var(A - r * B) / (1 + r**2)`` with ``r = mean A / mean B`` (which cancels a flicker of the
    light as well as the fixed pattern) is the variance at signal ``(mean A + mean B) / 2``. K is the slope of the
    least-squares line through all those points.

    Args:
        flats: ``(H, W)`` mosaics in ``pattern``, of one size, raw units.
        black_level: one value or ``(R, Gr, Gb, B)``.
        white_level: the saturation level, raw units.
        pattern: the flats' CFA pattern.
        names: a name per flat for messages.
        groups: an exposure label per flat (e.g. its ``flat/<exposure>/`` folder), or None to group by level.

    Returns:
        :class:`GainFit`.

    Raises:
        CalibrationError: mixed sizes; fewer than 2 exposure levels with a pair of unsaturated flats; a curve that
            does not rise (K <= 0).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> flats = [np.round(64 + 2.0 * rng.poisson(e, (128, 128)) + rng.normal(0, 2, (128, 128)))
        ...          for e in (100, 100, 400, 400, 1600, 1600)]
        >>> round(fit_gain(flats, 64, 16383).K, 1)
        2.0
    """
    names = [f"flat {index}" for index in range(len(flats))] if names is None else list(names)
    mosaics = [_unify(np.asarray(flat), pattern, name) for flat, name in zip(flats, names)]
    _check_same_shape(mosaics, names, "flat frames")
    black = _black4(black_level)
    if not math.isfinite(white_level) or white_level <= black.max():
        raise CalibrationError(f"the white level {white_level} does not exceed the black level {black.tolist()}")
    signal = [_plane_means(mosaic) - black for mosaic in mosaics]
    saturated = [
        float(np.mean(mosaic >= white_level)) > SATURATED_FRACTION
        or bool(np.any(level > SATURATED_MEAN * (white_level - black)))
        for mosaic, level in zip(mosaics, signal)
    ]
    dropped = [name for name, bad in zip(names, saturated) if bad]
    if dropped:
        warnings.warn(
            f"{len(dropped)} saturated flat frame(s) left out (pixels at the white level {white_level:g}, or a "
            f"channel above {SATURATED_MEAN:.0%} of the range): {', '.join(dropped)}",
            stacklevel=2,
        )
    kept = [index for index, bad in enumerate(saturated) if not bad]
    if groups is not None:
        labels = [str(groups[index]) for index in kept]
        order = {label: position for position, label in enumerate(dict.fromkeys(labels))}
        grouped: list[list[int]] = [[] for _ in order]
        for index, label in zip(kept, labels):
            grouped[order[label]].append(index)
    else:
        grouped = _group_by_level(kept, [float(signal[index].mean()) for index in kept])
    means, variances, pairs, levels = [], [], [], []
    for members in grouped:
        label = str(groups[members[0]]) if groups is not None else f"{signal[members[0]].mean():.1f} DN"
        if len(members) < 2:
            warnings.warn(
                f"only one flat at exposure {label} ({names[members[0]]}): a pair is needed, it is left out",
                stacklevel=2,
            )
        for first, second in zip(members[0::2], members[1::2]):
            mean, variance = _pair_variance(mosaics[first], mosaics[second], black)
            means.append(mean)
            variances.append(variance)
            pairs.append(f"{names[first]} + {names[second]}")
            levels.append(label)
    if len(set(levels)) < 2:
        raise CalibrationError(
            f"flat frames: {len(set(levels))} usable exposure level(s) among {len(names)} flats "
            f"({len(dropped)} saturated); the photon-transfer fit needs pairs of unsaturated flats at 2 or more "
            f"exposures (flats: {', '.join(names[:6])}{' ...' if len(names) > 6 else ''})"
        )
    means, variances = np.array(means), np.array(variances)
    slope, intercept = np.polyfit(means.ravel(), variances.ravel(), 1)
    if not slope > 0:
        raise CalibrationError(
            f"the photon-transfer curve of the flats does not rise (slope {slope:.3g} DN/e-): are they lit, and "
            f"at different exposures? (flats: {', '.join(names[:4])} ...)"
        )
    return GainFit(float(slope), float(intercept), means, variances, pairs, levels, dropped)


def _group_by_level(indices: Sequence[int], levels: Sequence[float]) -> list[list[int]]:
    """``indices`` grouped by similar ``levels``: sorted, a new group whenever a level exceeds the group's first
    by more than GROUP_TOLERANCE (relative) plus GROUP_SLACK (DN). Groups keep the sort order."""
    grouped: list[list[int]] = []
    start = -math.inf
    for level, index in sorted(zip(levels, indices)):
        if not grouped or level > start + abs(start) * GROUP_TOLERANCE + GROUP_SLACK:
            grouped.append([])
            start = level
        grouped[-1].append(index)
    return grouped


def _pair_variance(first: np.ndarray, second: np.ndarray, black: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``((4,) mean signal, (4,) temporal variance)`` of two flats of one exposure, per plane."""
    means, variances = np.empty(4), np.empty(4)
    for plane, (a, b) in enumerate(zip(pack(first), pack(second))):
        a = a.astype(np.float64) - black[plane]
        b = b.astype(np.float64) - black[plane]
        mean_a, mean_b = a.mean(), b.mean()
        ratio = mean_a / mean_b if mean_b > 0 and 0.5 < mean_a / mean_b < 2.0 else 1.0
        means[plane] = (mean_a + mean_b) / 2
        variances[plane] = (a - ratio * b).var(ddof=1) / (1.0 + ratio**2)
    return means, variances


# ------------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True, eq=False)
class SettingCalibration:
    """One setting (ISO, gain) calibrated: its name, gain fit, dark statistics and levels."""

    name: str
    gain: GainFit
    dark: DarkStats
    black_level: np.ndarray
    white_level: float

    @property
    def K(self) -> float:
        """The system gain, DN per electron."""
        return self.gain.K


def calibrate_setting(
    name: str,
    darks: FrameSet,
    flats: FrameSet,
    *,
    lambdas: Optional[Sequence[float]] = None,
    max_samples: int = MAX_PPCC_SAMPLES,
    min_shading_frames: int = MIN_SHADING_FRAMES,
) -> SettingCalibration:
    """Calibrates one setting from its dark and flat frames (:func:`calibrate_dark`, :func:`fit_gain`).

    Raises:
        CalibrationError: as those, or darks and flats of different patterns or sizes, or no white level.
    """
    both = [*darks.names[:1], *flats.names[:1]]
    if darks.pattern != flats.pattern:
        raise CalibrationError(
            f"setting {name}: the dark frames have the CFA pattern {darks.pattern} ({both[0]}), the flats "
            f"{flats.pattern} ({both[1]})"
        )
    if darks.shape != flats.shape:
        raise CalibrationError(
            f"setting {name}: the dark frames are {darks.shape[0]}x{darks.shape[1]} ({both[0]}), the flats "
            f"{flats.shape[0]}x{flats.shape[1]} ({both[1]}); all frames must have one size"
        )
    white = flats.white_level if flats.white_level is not None else darks.white_level
    if white is None:
        raise CalibrationError(f"setting {name}: the white level of the frames is unknown: give it (--white-level)")
    dark = calibrate_dark(
        darks.mosaics,
        darks.black_level,
        names=darks.names,
        lambdas=lambdas,
        max_samples=max_samples,
        min_shading_frames=min_shading_frames,
    )
    gain = fit_gain(flats.mosaics, flats.black_level, white, names=flats.names, groups=flats.groups)
    return SettingCalibration(name, gain, dark, darks.black_level, float(white))


def fit_log_linear(gains: Sequence[float], sigmas: Sequence[float]) -> dict:
    """``{"slope", "bias", "sigma"}`` of ``log(sigma) = slope * log(K) + bias``: least squares, ``sigma`` the
    residual standard deviation (``n - 2`` degrees of freedom; 0 with two settings or fewer). One setting (or all
    of one K): slope 0, bias ``log(sigma)``'s mean. Sigmas below :data:`LOG_FLOOR` enter as it.

    Example:
        >>> fit = fit_log_linear([1.0, 2.0, 4.0], [3.0, 6.0, 12.0])
        >>> round(fit["slope"], 6), round(fit["bias"], 6), round(fit["sigma"], 6)
        (1.0, 1.098612, 0.0)
    """
    x = np.log(np.asarray(gains, dtype=np.float64))
    y = np.log(np.maximum(np.asarray(sigmas, dtype=np.float64), LOG_FLOOR))
    if x.size < 2 or np.ptp(x) == 0:
        return {"slope": 0.0, "bias": float(y.mean()), "sigma": float(y.std()) if x.size > 1 else 0.0}
    slope, bias = np.polyfit(x, y, 1)
    residuals = y - (slope * x + bias)
    sigma = math.sqrt(float(residuals @ residuals) / (x.size - 2)) if x.size > 2 else 0.0
    return {"slope": float(slope), "bias": float(bias), "sigma": sigma}


def fit_dark_shading(settings: Sequence[SettingCalibration]) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """``(intercept, slope)``, each ``(4, H/2, W/2)`` float32, of the per-pixel line ``shading = intercept + slope
    * K`` through the settings' dark shading (least squares; one setting: slope 0). None when a setting has no
    shading (too few dark frames) or the settings' frames differ in size (with a warning)."""
    if not settings or any(setting.dark.shading is None for setting in settings):
        return None
    shapes = {setting.dark.shading.shape for setting in settings}
    if len(shapes) > 1:
        warnings.warn(
            "no dark shading: the settings' frames differ in size ("
            + ", ".join(f"{s.name}: {s.dark.shape[0]}x{s.dark.shape[1]}" for s in settings)
            + ")",
            stacklevel=2,
        )
        return None
    gains = np.array([setting.K for setting in settings])
    stack = np.stack([setting.dark.shading.astype(np.float64) for setting in settings])
    mean = stack.mean(axis=0)
    spread = gains - gains.mean()
    if len(settings) < 2 or not np.any(spread):
        return mean.astype(np.float32), np.zeros_like(mean, dtype=np.float32)
    slope = np.tensordot(spread, stack - mean, axes=1) / float(spread @ spread)
    intercept = mean - slope * gains.mean()
    return intercept.astype(np.float32), slope.astype(np.float32)


def build_profile(
    settings: Sequence[SettingCalibration], *, camera: str, source: str, dark_shading_file: Optional[str] = None
) -> dict:
    """The noise profile (schema ``cycleisp_fast.noise_profile/1``) of calibrated settings, ordered by K.

    ``black_level`` is the mean black level of the settings' planes and ``saturation`` the lowest white level less
    it; ``color_bias`` is relative to each plane's own black level (what a RAW reader subtracts). The quantisation
    step is the largest found.

    Args:
        settings: one or more calibrated settings.
        camera: the camera's name.
        source: how the profile was made (a sentence).
        dark_shading_file: the name of the npz of :func:`fit_dark_shading` beside the profile, or None.

    Raises:
        CalibrationError: no settings.
    """
    if not settings:
        raise CalibrationError("no settings to build a profile from")
    ordered = sorted(settings, key=lambda setting: setting.K)
    gains = [setting.K for setting in ordered]
    black = float(np.mean([setting.black_level.mean() for setting in ordered]))
    white = min(setting.white_level for setting in ordered)
    tukey = fit_log_linear(gains, [setting.dark.tukey_sigma for setting in ordered])
    tukey["lambda"] = [setting.dark.tukey_lambda for setting in ordered]
    profile = {
        "format": PROFILE_FORMAT,
        "camera": camera,
        "source": source,
        "saturation": white - black,
        "black_level": black,
        "K": [min(gains), max(gains)],
        "read_gaussian": fit_log_linear(gains, [setting.dark.read_sigma for setting in ordered]),
        "read_tukey": tukey,
        "row": fit_log_linear(gains, [setting.dark.row_sigma for setting in ordered]),
        "color_bias": [[float(v) for v in setting.dark.color_bias] for setting in ordered],
        "quantization_step": max(setting.dark.quantization_step for setting in ordered),
    }
    if dark_shading_file is not None:
        profile["dark_shading"] = {"file": dark_shading_file}
    profile["calibration"] = {
        "settings": [
            {
                "name": setting.name,
                "K": setting.K,
                "read_sigma": setting.dark.read_sigma,
                "tukey_sigma": setting.dark.tukey_sigma,
                "tukey_lambda": setting.dark.tukey_lambda,
                "row_sigma": setting.dark.row_sigma,
                "color_bias": [float(v) for v in setting.dark.color_bias],
            }
            for setting in ordered
        ]
    }
    return profile


def calibrate_settings(iso_sets: Mapping[str, tuple[FrameSet, FrameSet]], **options) -> list[SettingCalibration]:
    """Every setting of ``iso_sets`` (name -> ``(darks, flats)``) calibrated (:func:`calibrate_setting` with
    ``options``), in the mapping's order.

    Raises:
        CalibrationError: no settings, settings of different CFA patterns, or as :func:`calibrate_setting`.
    """
    if not iso_sets:
        raise CalibrationError("no settings to calibrate")
    patterns = {name: darks.pattern for name, (darks, _) in iso_sets.items()}
    if len(set(patterns.values())) > 1:
        raise CalibrationError(
            "the settings' frames have different CFA patterns: "
            + ", ".join(f"{name} ({iso_sets[name][0].names[0]}): {pattern}" for name, pattern in patterns.items())
        )
    return [calibrate_setting(name, darks, flats, **options) for name, (darks, flats) in iso_sets.items()]


def calibrate(
    iso_sets: Mapping[str, tuple[FrameSet, FrameSet]],
    *,
    camera: str = "camera",
    source: str = "calibrated by cycleisp_fast.noise.calibration",
    **options,
) -> dict:
    """The noise profile dict of the settings ``iso_sets`` (name -> ``(darks, flats)`` :class:`FrameSet`):
    :func:`calibrate_settings` then :func:`build_profile` (without dark shading: :func:`fit_dark_shading` gives
    it, for a file beside the profile).

    Example: ``calibrate({"ISO800": (read_frames(darks, ...), read_frames(flats, ...))}, camera="MyCam")``.
    """
    return build_profile(calibrate_settings(iso_sets, **options), camera=camera, source=source)
