"""Denoise images or camera RAW files with a chosen model and weights.

Inputs are image files (PNG, JPEG, TIFF), RAW files (DNG, NEF, CR2, ARW, ... anything LibRaw decodes with a
2x2 Bayer sensor) or folders of them (not recursive). Each input gives outputs in OUTDIR named after it:

  image             <stem>.png, the denoised image (8-bit; --bits 16 for 16-bit PNG)
  RAW, RAW model    <stem>.npy, the denoised packed RGGB planes (R, Gr, Gb, B) as (4, h, w) float32 in [0, 1],
                    and <stem>.png, that RAW developed for viewing: white balance, bilinear demosaic, the file's
                    colour matrix (identity when it has none), gamma 1/2.2 (no tone curve)
  RAW, sRGB model   <stem>.png: the RAW is developed the same way first, then denoised as an sRGB image

The RAW model (cycleisp-raw) needs the noise level, variance = shot * x + read: --shot/--read when given, else
the file's DNG NoiseProfile, else estimated from the image (Foi et al. style: the variance of a high-pass
residual against the local brightness, see cycleisp_fast.noise.estimation.estimate_raw_noise).

Large images are denoised in tiles (--tile, --overlap, in pixels of what the model sees: packed RAW is half the
sensor's size). An input that fails (unreadable, over the pixel limit, out of memory, anything) is reported on
stderr ("error: FILE: why"; --debug adds the traceback) and skipped; the others are still denoised, and the exit
status is 1. Every output is written atomically (never half-written).

Benchmarks (the only INPUT), written as their servers take them (cycleisp_fast.data.submissions):

  DND folder        info.mat + images_srgb/ or images_raw/ (the model's domain picks; --layout when both are there
                    and the model is 'noisy'). Per box OUTDIR/<image>_<box>.mat (0001_01.mat ... 0050_20.mat) holding
                    Idenoised_crop (float32 in [0, 1], h x w x 3 or h x w), then per image OUTDIR/bundled/0001.mat ...
                    holding Idenoised (1 x 20 cell), israw (logical), eval_version '1.0': upload bundled/ to
                    https://noise.visinf.tu-darmstadt.de. Resumable: a rerun skips the boxes already written.
                    --margin: context kept around each box. RAW: each box is flipped to RGGB and back (DND's
                    official raw script), with info.mat's noise level (nlf a = shot, b = read).
  SIDD blocks file  BenchmarkNoisyBlocksSrgb.mat or BenchmarkNoisyBlocksRaw.mat -> OUTDIR/SubmitSrgb.mat (or
                    SubmitRaw.mat): DenoisedBlocksSrgb (40 x 32 cell of 256x256x3 uint8; RAW: DenoisedBlocksRaw of
                    256x256 mosaics in the file's float type), TimeMPSrgb (seconds per megapixel in the denoiser),
                    OptionalData (struct: MethodName, MachineSpecs, any --optional-data); and the same blocks as
                    OUTDIR/SubmitSrgb.csv (SubmitRaw.csv) for SIDD's Kaggle competitions (ID, base64 BLOCK). RAW
                    blocks need --pattern (they carry no metadata) and take the noise level from --shot/--read, else
                    estimate it per image from its 32 blocks together.

Examples:
  cycleisp-fast denoise photo.png -o out --model cycleisp-srgb --weights sidd_rgb.pth
  cycleisp-fast denoise shots/ -o out --model cycleisp-raw --weights sidd_raw.pth --device cuda
  cycleisp-fast denoise dnd_2017 -o dnd_out --model aindnet --weights aindnet.pt --margin 80
  cycleisp-fast denoise photos/ -o out --model aindnet --weights aindnet.pt --optimize   (~2x on the CPU)
  cycleisp-fast denoise photo.png -o out --onnx sidd_rgb.onnx   (from cycleisp-fast export; onnxruntime, CPU)
  cycleisp-fast denoise BenchmarkNoisyBlocksRaw.mat -o sidd_out --model cycleisp-raw --weights sidd_raw.pth \
      --pattern S6,GP,N6,G4,IP,...   (one per image, in the order of the 40 benchmark scenes)
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from cycleisp_fast.arguments import INPUT_ERRORS, add_tiling_arguments, check_tiling, parse_device
from cycleisp_fast.backend import BACKENDS
from cycleisp_fast.commands.denoise_benchmarks import (
    DND_LAYOUTS,
    add_optimize_arguments,
    benchmark_input,
    load_model,
    resolve_model,
    run_dnd,
    run_sidd,
)
from cycleisp_fast.data.files import atomic_path, output_problem
from cycleisp_fast.data.images import IMAGE_SUFFIXES, read_image, write_image
from cycleisp_fast.data.raw import RAW_SUFFIXES, RawImage, is_raw_file, read_raw
from cycleisp_fast.data.sidd_blocks import parse_sidd_patterns
from cycleisp_fast.data.submissions import check_matlab_field_names
from cycleisp_fast.noise.estimation import estimate_raw_noise
from cycleisp_fast.pipelines.denoisers import DEFAULT_OVERLAP, DEFAULT_TILE, DENOISERS, denoise_raw, denoise_srgb
from cycleisp_fast.pipelines.unprocessing import process


def _is_input_file(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith(".")
        and (path.suffix.lower() in IMAGE_SUFFIXES or is_raw_file(path))
    )


def collect_inputs(arguments: list[str]) -> list[Path]:
    """The files named by ``arguments``: files as given, folders expanded to their image and RAW files (sorted).

    Raises:
        FileNotFoundError: an argument does not exist, or a folder holds no image or RAW file.
        ValueError: a file is neither an image nor a RAW file (by its suffix).
    """
    files = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted((child for child in path.iterdir() if _is_input_file(child)), key=lambda p: p.name)
            if not found:
                raise FileNotFoundError(f"no image or RAW files in folder {path}")
            files += found
        elif not path.exists():
            raise FileNotFoundError(f"input not found: {path}")
        elif path.suffix.lower() in IMAGE_SUFFIXES or is_raw_file(path):
            files.append(path)
        else:
            raise ValueError(
                f"input {path} is neither an image ({', '.join(IMAGE_SUFFIXES)}) nor a RAW file "
                f"({', '.join(RAW_SUFFIXES)})"
            )
    return files


def output_paths(path: Path, outdir: Path, *, raw_output: bool) -> list[Path]:
    """Where ``path``'s results go: ``[<stem>.npy, <stem>.png]`` for a denoised RAW, else ``[<stem>.png]``."""
    return [outdir / f"{path.stem}.npy", outdir / f"{path.stem}.png"] if raw_output else [outdir / f"{path.stem}.png"]


def save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` to ``path``, atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            np.save(handle, array)


def develop(packed: torch.Tensor, raw: RawImage, backend: str | None) -> torch.Tensor:
    """Packed RGGB ``(1, 4, h, w)`` -> sRGB ``(1, 3, 2h, 2w)`` in [0, 1] for viewing, with ``raw``'s white balance
    and colour matrix (the identity when the file has none)."""
    cam_to_srgb = raw.cam_to_srgb if raw.cam_to_srgb is not None else torch.eye(3)
    gains = raw.white_balance.double()
    return process(packed.clamp(0, 1), float(gains[0]), float(gains[2]), cam_to_srgb.to(packed.dtype), backend=backend)


def noise_levels(raw: RawImage, args: argparse.Namespace) -> tuple[float, float, str]:
    """``(shot, read, where from)`` for ``raw``: the options, the file's NoiseProfile, or an estimate."""
    if args.shot is not None:
        return args.shot, args.read, "given"
    if raw.noise_profile is not None:
        return float(raw.noise_profile[0]), float(raw.noise_profile[1]), "from the file's NoiseProfile"
    shot, read = estimate_raw_noise(raw.packed)
    return float(shot[0]), float(read[0]), "estimated"


def describe_file_failure(path: Path, error: Exception) -> str:
    """One line naming ``path`` and what went wrong: the message of an input error (it names the file or is
    prefixed with it), or the exception's type and message for anything else (memory, a bug)."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if isinstance(error, MemoryError | torch.OutOfMemoryError):
        message = f"out of memory ({message or type(error).__name__}); try a smaller --tile"
    elif not isinstance(error, INPUT_ERRORS):
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return message if str(path) in message else f"{path}: {message}"


def denoise_file(path: Path, model: torch.nn.Module, args: argparse.Namespace) -> str | None:
    """Denoises one input and writes its outputs; returns a note for the log (the RAW noise level) or None."""
    domain = DENOISERS[args.model].domain
    if not is_raw_file(path):
        denoised = denoise_srgb(model, read_image(path)[None], tile=args.tile, overlap=args.overlap)
        write_image(output_paths(path, args.outdir, raw_output=False)[0], denoised[0], bits=args.bits)
        return None
    raw = read_raw(path)
    packed = raw.packed[None]
    if domain == "srgb":
        developed = develop(packed, raw, args.backend)
        denoised = denoise_srgb(model, developed, tile=args.tile, overlap=args.overlap)
        write_image(output_paths(path, args.outdir, raw_output=False)[0], denoised[0], bits=args.bits)
        return None
    note = None
    if domain == "raw":
        shot, read, source = noise_levels(raw, args)
        note = f"{path}: noise shot {shot:.3g}, read {read:.3g} ({source})"
    else:  # the noisy baseline
        shot, read = 0.0, 0.0
    denoised = denoise_raw(model, packed.clamp(0, 1), shot, read, tile=args.tile, overlap=args.overlap)
    developed = develop(denoised, raw, args.backend)
    planes_path, image_path = output_paths(path, args.outdir, raw_output=True)
    save_npy(planes_path, denoised[0].numpy())
    write_image(image_path, developed[0], bits=args.bits)
    return note


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``denoise`` options to ``parser``, the benchmark-only ones in a group of their own."""
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image or RAW files, or folders of them")
    parser.add_argument("-o", "--outdir", type=Path, required=True, help="folder for the outputs (created)")
    parser.add_argument(
        "--model",
        choices=list(DENOISERS),
        help="; ".join(f"{name}: {entry.summary}" for name, entry in DENOISERS.items()),
    )
    parser.add_argument(
        "--weights",
        type=Path,
        metavar="FILE",
        help="checkpoint: an official one or one written by cycleisp-fast train (all but 'noisy' need one)",
    )
    parser.add_argument(
        "--onnx",
        type=Path,
        metavar="FILE",
        help="in place of --model/--weights: a denoiser written by cycleisp-fast export (.onnx, run by onnxruntime "
        "on the CPU; a .pt2 program works too)",
    )
    add_tiling_arguments(parser, tile=DEFAULT_TILE, overlap=DEFAULT_OVERLAP)
    parser.add_argument("--bits", type=int, choices=(8, 16), default=8, help="bits per sample of the PNGs (8)")
    parser.add_argument(
        "--shot",
        type=float,
        help="RAW shot-noise variance (with --read; cycleisp-raw only), for "
        "RAW files and SIDD RAW blocks (default: estimated)",
    )
    parser.add_argument("--read", type=float, help="RAW read-noise variance (with --shot; cycleisp-raw only)")
    parser.add_argument("--device", type=parse_device, default="cpu", help="cpu (default), cuda or cuda:<index>")
    parser.add_argument("--backend", choices=BACKENDS, help="backend of the fused ops (default: the one in force)")
    add_optimize_arguments(parser)
    benchmark = parser.add_argument_group("benchmarks (a DND folder or a SIDD blocks file as the only INPUT)")
    benchmark.add_argument(
        "--layout",
        choices=("auto",) + DND_LAYOUTS,
        default="auto",
        help="DND: which images to denoise (default: those of the model's domain; needed for "
        "'noisy' when the folder holds both)",
    )
    benchmark.add_argument(
        "--margin",
        type=_non_negative_int,
        default=0,
        metavar="PIXELS",
        help="DND: context kept around each box (clipped at the image border), cropped away after "
        "denoising; 0 (default) as CycleISP's test_dnd_*.py, 80 is AINDNet's protocol (its "
        "test_dnd.py)",
    )
    benchmark.add_argument(
        "--pattern",
        type=parse_sidd_patterns,
        metavar="PATTERN[,...]",
        help="SIDD RAW blocks: the Bayer pattern of every image, or one per image, comma-separated: "
        "RGGB/BGGR/GRBG/GBRG or SIDD phone codes (GP, N6, G4: BGGR; IP: RGGB; S6: GRBG)",
    )
    benchmark.add_argument(
        "--optional-data",
        dest="optional_data",
        action="append",
        type=_optional_field,
        default=[],
        metavar="FIELD=TEXT",
        help="SIDD: a field of the submission's OptionalData struct (repeatable), e.g. "
        "Authors=..., PaperTitle=..., Venue=...; MethodName and MachineSpecs are filled in "
        "unless given",
    )


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _optional_field(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    try:
        check_matlab_field_names([name])
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{error}, in {text!r}") from error
    if not separator:
        raise argparse.ArgumentTypeError(f"expected FIELD=TEXT, got {text!r}")
    return name, value


def _check_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Path]:
    check_tiling(args, parser)
    if (args.shot is None) != (args.read is None):
        parser.error("give --shot and --read together")
    if args.shot is not None:
        if args.model != "cycleisp-raw":
            parser.error(f"--shot/--read set the noise level of the RAW model cycleisp-raw, not of {args.model}")
        if not (args.shot >= 0 and args.read >= 0):
            parser.error(f"--shot and --read are variances >= 0, got {args.shot} and {args.read}")
    try:
        inputs = collect_inputs(args.inputs)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    domain = DENOISERS[args.model].domain
    if domain == "raw":
        images = [str(path) for path in inputs if not is_raw_file(path)]
        if images:
            parser.error(f"{args.model} denoises RAW files; these inputs are sRGB images: {', '.join(images[:5])}")
    claimed: dict[Path, Path] = {}
    for path in inputs:
        for output in output_paths(path, args.outdir, raw_output=is_raw_file(path) and domain != "srgb"):
            if output in claimed:
                parser.error(f"inputs {claimed[output]} and {path} would both write {output}")
            claimed[output] = path
    return inputs


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Denoises a benchmark input, or every image and RAW file of the inputs into ``--outdir``.

    Returns the exit code: 0, or 1 when some input failed (each failure is reported on stderr and skipped).
    """
    if problem := output_problem(args.outdir, folder=True):
        parser.error(f"-o/--outdir: {problem}")
    resolve_model(args, parser)
    benchmark = benchmark_input(args.inputs, parser)
    if benchmark is not None:
        return run_dnd(benchmark, args, parser) if benchmark.is_dir() else run_sidd(benchmark, args, parser)
    given = [
        option
        for option, value in (
            ("--layout", args.layout != "auto"),
            ("--margin", args.margin),
            ("--pattern", args.pattern),
            ("--optional-data", args.optional_data),
        )
        if value
    ]
    if given:
        parser.error(
            f"{', '.join(given)} apply to benchmark inputs (a DND folder or a SIDD blocks file), not to "
            "image or RAW files"
        )
    inputs = _check_arguments(args, parser)
    model = load_model(args, parser)
    failures = []
    for path in tqdm(inputs, desc="denoise", unit="file", file=sys.stderr):
        try:
            note = denoise_file(path, model, args)
        except Exception as error:  # whatever one file raises (bad data, memory, a bug) must not end the batch
            tqdm.write(f"error: {describe_file_failure(path, error)}", file=sys.stderr)
            if getattr(args, "debug", False):
                tqdm.write("".join(traceback.format_exception(error)), file=sys.stderr)
            failures.append(path)
            continue
        if note is not None:
            tqdm.write(note)
    print(
        f"denoised {len(inputs) - len(failures)} of {len(inputs)} input(s) into {args.outdir}"
        + (f"; {len(failures)} failed" if failures else "")
    )
    return 1 if failures else 0
