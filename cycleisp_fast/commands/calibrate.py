"""Calibrates a camera's noise (ELD-style) from dark and flat-field frames: ``cycleisp-fast calibrate ROOT -o
PROFILE.json``.

ROOT holds one folder per ISO/gain setting (its name names the setting in the profile), each with:
  ROOT/<setting>/dark/   bias/dark frames (no light, shortest exposure, lens capped): 2 or more; 16 or more
                         also measure the dark shading (fixed pattern)
  ROOT/<setting>/flat/   flat fields (an evenly lit, defocused grey card or light panel) in pairs at each of
                         several exposures, from dim to near saturation; either all in flat/ (grouped by their
                         mean level: flats within 5% of each other are one exposure) or one sub-folder per
                         exposure, flat/<exposure>/ (needed when the light flickers by more than that)
ROOT may also be one setting's folder itself (holding dark/ and flat/). Frames are camera RAW files (anything
LibRaw reads: pattern, black and white levels from the files) or .npy 2-D mosaics (give --black-level and
--white-level; --pattern, default RGGB). Frames of one setting must share a size, pattern and levels; a dark frame
whose noise differs by more than 2x from its folder's median is refused as another setting's; saturated flats are
left out with a warning.

The profile (JSON, schema cycleisp_fast.noise_profile/1) gives the gain range K, log-linear fits of the read
(Gaussian and Tukey-lambda scale) and row noise against K, the Tukey shapes and colour biases per setting and the
quantisation step; with 16+ dark frames per setting also PROFILE.dark_shading.npz beside it (per-pixel
intercept + slope * K, planes R, Gr, Gb, B). Files are written atomically: nothing on error. --plots DIR draws
the photon-transfer curves, the PPCC curves, the row-noise spectra and the sigma-vs-K fits (needs matplotlib).

Examples:
  cycleisp-fast calibrate calib/ -o mycam.json --camera MyCam --plots calib_plots
  cycleisp-fast calibrate calib/ -o sim.json --black-level 512 --white-level 16383 --pattern GRBG
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import warnings
from pathlib import Path

from cycleisp_fast.data.files import output_problem

PATTERN_CHOICES = ("RGGB", "BGGR", "GRBG", "GBRG")
DARK_FOLDER = "dark"
FLAT_FOLDER = "flat"
SHADING_SUFFIX = ".dark_shading.npz"
PLOT_NAMES = ("photon_transfer.png", "ppcc.png", "row_spectrum.png", "sigma_vs_K.png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``calibrate`` options to ``parser``."""
    parser.add_argument("root", type=Path, metavar="ROOT", help="folder of settings: ROOT/<setting>/{dark,flat}/")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="PROFILE.json", help="the profile to write")
    parser.add_argument(
        "--camera", metavar="NAME", help="the camera's name in the profile (default: ROOT's folder name)"
    )
    parser.add_argument(
        "--pattern", choices=PATTERN_CHOICES, help="CFA pattern of .npy frames (default RGGB; RAW files give theirs)"
    )
    parser.add_argument(
        "--black-level", type=float, metavar="N", help="black level, DN (needed for .npy; overrides RAW files')"
    )
    parser.add_argument(
        "--white-level", type=float, metavar="N", help="white (saturation) level, DN (needed for .npy; overrides)"
    )
    parser.add_argument("--plots", type=Path, metavar="DIR", help="also draw the fits as PNGs into DIR")


def shading_path(profile: Path) -> Path:
    """``PROFILE.dark_shading.npz`` beside ``profile`` (``cam.json`` -> ``cam.dark_shading.npz``)."""
    return profile.with_name(profile.stem + SHADING_SUFFIX)


def _frames_in(folder: Path) -> list[Path]:
    from cycleisp_fast.noise.calibration import is_frame_file

    return sorted(path for path in folder.iterdir() if path.is_file() and is_frame_file(path))


def _subfolders(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_dir() and not path.name.startswith("."))


def find_settings(root: Path) -> dict[str, tuple[list[Path], list[Path], list[str] | None]]:
    """Setting name -> ``(dark frames, flat frames, exposure label per flat or None)`` under ``root``.

    Raises:
        CalibrationError: ``root`` holds no setting folder, a setting lacks ``dark/`` or ``flat/``, one of those
            holds no frames, or ``flat/`` mixes frames and exposure sub-folders.
    """
    from cycleisp_fast.noise.calibration import CalibrationError

    if (root / DARK_FOLDER).is_dir() or (root / FLAT_FOLDER).is_dir():
        folders = [root]
    else:
        folders = _subfolders(root)
        if not folders:
            raise CalibrationError(
                f"{root} holds no setting folders: expected {root}/<setting>/{DARK_FOLDER}/ and "
                f"{root}/<setting>/{FLAT_FOLDER}/ (one folder per ISO or gain)"
            )
    settings = {}
    for folder in folders:
        for part in (DARK_FOLDER, FLAT_FOLDER):
            if not (folder / part).is_dir():
                raise CalibrationError(
                    f"setting folder {folder} has no {part}/ folder: each setting needs {DARK_FOLDER}/ (bias "
                    f"frames) and {FLAT_FOLDER}/ (flat-field pairs)"
                )
        darks = _frames_in(folder / DARK_FOLDER)
        if not darks:
            raise CalibrationError(f"{folder / DARK_FOLDER} holds no frames (.npy or camera RAW files)")
        flat_folder = folder / FLAT_FOLDER
        exposures = _subfolders(flat_folder)
        flats = _frames_in(flat_folder)
        groups = None
        if exposures:
            if flats:
                raise CalibrationError(
                    f"{flat_folder} holds both frames ({flats[0].name}, ...) and exposure sub-folders "
                    f"({exposures[0].name}/, ...): put every flat into its exposure's sub-folder"
                )
            groups = []
            for exposure in exposures:
                members = _frames_in(exposure)
                flats += members
                groups += [exposure.name] * len(members)
        if not flats:
            raise CalibrationError(f"{flat_folder} holds no frames (.npy or camera RAW files)")
        settings[folder.name] = (darks, flats, groups)
    return settings


def _print_warnings(caught: list, command: str = "calibrate") -> None:
    for warning in caught:
        print(f"cycleisp-fast {command}: warning: {warning.message}", file=sys.stderr)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Calibrates every setting of ROOT, writes the profile (and dark shading), draws the plots; returns 0.

    Bad options end with ``parser.error``; frames that cannot be calibrated raise CalibrationError (a
    ValueError) naming them, before anything is written."""
    from cycleisp_fast.data.files import atomic_path, save_numpy
    from cycleisp_fast.noise.calibration import (
        CalibrationError,
        build_profile,
        calibrate_setting,
        fit_dark_shading,
        read_frames,
    )
    from cycleisp_fast.noise.profiles import validate_profile

    if not args.root.is_dir():
        parser.error(f"ROOT {args.root} is not a folder" if args.root.exists() else f"ROOT {args.root} does not exist")
    if problem := output_problem(args.out, folder=False):
        parser.error(f"-o/--out: {problem}")
    if args.plots is not None:
        if problem := output_problem(args.plots, folder=True):
            parser.error(f"--plots: {problem}")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plots needs matplotlib: pip install 'cycleisp_fast[bench]'")
    for name in ("black_level", "white_level"):
        value = getattr(args, name)
        if value is not None and not math.isfinite(value):
            parser.error(f"--{name.replace('_', '-')} must be a finite number, got {value}")

    layout = find_settings(args.root)
    levels = {"pattern": args.pattern, "black_level": args.black_level, "white_level": args.white_level}
    settings, first = [], None
    for name, (dark_paths, flat_paths, groups) in layout.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                darks = read_frames(dark_paths, **levels)
                flats = read_frames(flat_paths, groups=groups, **levels)
                if first is not None and darks.pattern != first.pattern:
                    raise CalibrationError(
                        f"settings of different CFA patterns: {first.names[0]} is {first.pattern}, "
                        f"{darks.names[0]} is {darks.pattern}"
                    )
                first = first or darks
                setting = calibrate_setting(name, darks, flats)
                del darks, flats  # free the frames before the next setting's are read
            finally:
                _print_warnings(caught)  # before an error's message too (saturated flats explain it)
        settings.append(setting)
        dark = setting.dark
        print(
            f"{name}: K {setting.K:.4g} DN/e-, read sigma {dark.read_sigma:.4g} DN, Tukey lambda "
            f"{dark.tukey_lambda:.3f} sigma {dark.tukey_sigma:.4g}, row sigma {dark.row_sigma:.4g}, colour bias "
            f"{', '.join(f'{v:.3g}' for v in dark.color_bias)} DN ({dark.n_frames} dark frames, "
            f"{len(setting.gain.pairs)} flat pairs at {len(set(setting.gain.levels))} exposures)"
        )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shading = fit_dark_shading(settings)
    _print_warnings(caught)
    shading_file = shading_path(args.out)
    camera = args.camera or args.root.resolve().name
    source = f"calibrated by cycleisp-fast calibrate from {args.root} on {datetime.date.today().isoformat()}"
    profile = build_profile(
        settings, camera=camera, source=source, dark_shading_file=None if shading is None else shading_file.name
    )
    validate_profile(profile, os.fspath(args.out))
    text = json.dumps(profile, indent=1, allow_nan=False) + "\n"
    if shading is not None:
        save_numpy(shading_file, intercept=shading[0], slope=shading[1])
    with atomic_path(args.out) as temporary:
        temporary.write_text(text, encoding="utf-8")
    print(
        f"profile of {len(settings)} setting(s), K {profile['K'][0]:.4g} to {profile['K'][1]:.4g} DN/e-, written "
        f"to {args.out}" + (f" (dark shading: {shading_file})" if shading is not None else "")
    )
    if args.plots is not None:
        paths = write_plots(settings, profile, args.plots)
        print(f"plots: {', '.join(os.fspath(path) for path in paths)}")
    return 0


def write_plots(settings: list, profile: dict, folder: Path) -> list[Path]:
    """Draws :data:`PLOT_NAMES` into ``folder`` (created): the photon-transfer points and fit per setting, the PPCC
    against lambda, the row-noise power spectrum, and the log-linear sigma-vs-K fits. Returns the paths."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from cycleisp_fast.data.files import atomic_path

    def new_axes():
        figure = Figure(figsize=(7, 5), dpi=110, layout="constrained")
        return figure, figure.subplots()

    ordered = sorted(settings, key=lambda setting: setting.K)
    colours = [f"C{index % 10}" for index in range(len(ordered))]
    figures = {}

    figure, axes = new_axes()
    for setting, colour in zip(ordered, colours):
        gain = setting.gain
        axes.plot(gain.means.ravel(), gain.variances.ravel(), "o", color=colour, markersize=3)
        span = np.array([0.0, gain.means.max()])
        axes.plot(span, gain.K * span + gain.intercept, "-", color=colour, label=f"{setting.name}: K = {gain.K:.4g}")
    axes.set(title="photon transfer", xlabel="mean signal above black (DN)", ylabel="temporal variance (DN$^2$)")
    figures[PLOT_NAMES[0]] = (figure, axes)

    figure, axes = new_axes()
    for setting, colour in zip(ordered, colours):
        curve = setting.dark.ppcc_curve
        axes.plot(curve[:, 0], curve[:, 1], "-", color=colour, label=f"{setting.name}: {setting.dark.tukey_lambda:.3f}")
        axes.axvline(setting.dark.tukey_lambda, color=colour, linestyle=":")
    axes.set(title="read noise: Tukey-lambda PPCC", xlabel="lambda", ylabel="probability-plot correlation")
    figures[PLOT_NAMES[1]] = (figure, axes)

    figure, axes = new_axes()
    for setting, colour in zip(ordered, colours):
        spectrum = setting.dark.row_spectrum
        frequencies = np.fft.rfftfreq(setting.dark.shape[0])
        inner = slice(1, -1)  # the mean (0) and the even/odd-row difference (0.5) went with the planes' means
        axes.semilogy(frequencies[inner], spectrum[inner], "-", color=colour, linewidth=0.7, label=setting.name)
    axes.set(
        title="row noise: |FFT(row means)|$^2$ / rows", xlabel="frequency (cycles per row)", ylabel="power (DN$^2$)"
    )
    figures[PLOT_NAMES[2]] = (figure, axes)

    figure = Figure(figsize=(13, 4.2), dpi=110, layout="constrained")
    panels = figure.subplots(1, 3)
    gains = np.array([setting.K for setting in ordered])
    span = np.geomspace(gains.min(), gains.max(), 50) if gains.size > 1 else gains
    for axes, (key, attribute, title) in zip(
        panels,
        [
            ("read_gaussian", "read_sigma", "read noise (Gaussian sigma)"),
            ("read_tukey", "tukey_sigma", "read noise (Tukey scale)"),
            ("row", "row_sigma", "row noise sigma"),
        ],
    ):
        fit = profile[key]
        sigmas = [max(getattr(setting.dark, attribute), 1e-3) for setting in ordered]
        axes.loglog(gains, sigmas, "o", color="C0", label="settings")
        axes.loglog(
            span,
            np.exp(fit["slope"] * np.log(span) + fit["bias"]),
            "-",
            color="C1",
            label=f"slope {fit['slope']:.3f}, bias {fit['bias']:.3f}, sigma {fit['sigma']:.3f}",
        )
        axes.set(title=title, xlabel="K (DN per electron)", ylabel="sigma (DN)")
        axes.legend(fontsize=8)
    figures[PLOT_NAMES[3]] = (figure, None)

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (figure, axes) in figures.items():
        if axes is not None:
            axes.grid(alpha=0.3)
            axes.legend(fontsize=8)
        figure.suptitle(f"{profile['camera']}: {len(ordered)} setting(s)")
        with atomic_path(folder / name) as temporary:
            FigureCanvasAgg(figure).print_png(temporary)
        paths.append(folder / name)
    return paths
