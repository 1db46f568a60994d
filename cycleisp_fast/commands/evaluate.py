"""PSNR / SSIM of denoising models over a dataset of noisy/clean pairs, side by side.

DATA is a dataset folder in one of the layouts of cycleisp_fast.data.datasets.open_pairs, detected unless
--layout says which: folder (clean/<name>.png + noisy/<name>.png), sidd-srgb, sidd-raw (SIDD-Medium's Data/), or
sidd-val-srgb / sidd-val-raw (SIDD's validation blocks: ValidationNoisyBlocksSrgb.mat + ValidationGtBlocksSrgb.mat,
or the Raw pair, 40 x 32 blocks of 256x256; each block is one item, named <image>_<block>, 0001_01 ...). Each
--model NAME[=WEIGHTS] adds a model (repeatable; the same NAME twice with other weights is fine); the noisy input
itself, "noisy", is always scored as the baseline.

  sRGB layouts   sRGB models (cycleisp-srgb, aindnet), scored on the denoised images clamped to [0, 1]
  sidd-raw       the RAW model cycleisp-raw: each mosaic is cropped to RGGB and packed (4, h, w), its noise
                 level estimated from the noisy image, and the packed planes are scored (as CycleISP's
                 test_sidd_raw.py)
  sidd-val-raw   cycleisp-raw on each 256x256 mosaic, flipped to RGGB and back (nothing cropped), scored as
                 stored in the files (h, w): the blocks carry no metadata, so --pattern gives the Bayer pattern
                 and the noise level is estimated per image from its 32 noisy blocks together

PSNR is 10 log10(1 / MSE) over every pixel and channel of an item (scikit-image's and MATLAB's psnr, data range
1). By default the output is scored as the float the model gives, clamped to [0, 1], against the reference in
[0, 1] (uint8 / 255 for SIDD): as CycleISP's test_sidd_rgb.py and MPRNet's / Restormer's evaluate_SIDD.m score
SIDD. --output-dtype uint8 rounds each output to 8 bits first, as a PNG or a SIDD benchmark submission holds it
(it scores a little lower). SSIM: --ssim skimage (default) is scikit-image's structural_similarity with a
Gaussian window (sigma 1.5, population covariance), per channel and averaged, borders cropped (what CycleISP's
scripts call); --ssim matlab is MATLAB's ssim as evaluate_SIDD.m calls it, which takes an H x W x 3 block as a
volume: the 11-tap Gaussian also runs across the 3 channels, borders replicated and kept in the mean
(cycleisp_fast.pipelines.metrics.ssim_matlab). The table on stdout gives each model's mean over the items (the
1280 blocks for SIDD's validation set, as evaluate_SIDD.m averages them); an item identical to its reference has
an infinite PSNR, which the mean skips (as CycleISP's batch_PSNR does) and the table counts. --csv writes every
score (image, model, psnr, ssim), atomically. The first pair that cannot be read stops the run (exit status 1, no
CSV): means over part of a dataset would not compare.

DND and SIDD's benchmark blocks have no public clean images: they are scored by their servers. Write the files
those take with cycleisp-fast denoise (a DND folder, or BenchmarkNoisyBlocksSrgb.mat, as its only input) and
upload them: DND's OUT/bundled/*.mat at https://noise.visinf.tu-darmstadt.de, SIDD's OUT/SubmitSrgb.mat at
https://www.eecs.yorku.ca/~kamel/sidd/benchmark.php (or OUT/SubmitSrgb.csv on Kaggle).

Examples:
  cycleisp-fast eval datasets/sidd_val --model cycleisp-srgb=sidd_rgb.pth --model aindnet=aindnet.pt --csv s.csv
  cycleisp-fast eval datasets/sidd_val --layout sidd-val-srgb --model cycleisp-srgb=sidd_rgb.pth --ssim matlab
  cycleisp-fast eval my_pairs --layout folder --model cycleisp-srgb=runs/small/last.pt --limit 20
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from cycleisp_fast.arguments import INPUT_ERRORS, add_tiling_arguments, check_tiling, parse_device
from cycleisp_fast.backend import BACKENDS
from cycleisp_fast.bench.report import markdown_table
from cycleisp_fast.commands.denoise_benchmarks import add_optimize_arguments, check_optimize_arguments
from cycleisp_fast.data.datasets import LAYOUTS, detect_layout, open_pairs
from cycleisp_fast.data.files import atomic_path, output_problem
from cycleisp_fast.data.images import quantize
from cycleisp_fast.data.raw import pack_rggb
from cycleisp_fast.data.sidd_blocks import parse_sidd_patterns
from cycleisp_fast.noise.estimation import estimate_raw_noise
from cycleisp_fast.pipelines.benchmarks import denoise_item
from cycleisp_fast.pipelines.denoisers import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    DENOISERS,
    denoise_raw,
    denoise_srgb,
    load_denoiser,
)
from cycleisp_fast.pipelines.metrics import mean_finite, psnr, ssim, ssim_matlab

CSV_COLUMNS = ("image", "model", "psnr", "ssim")
BASELINE = "noisy"
SSIM_METRICS = {"skimage": ssim, "matlab": ssim_matlab}
"""--ssim choice -> the metric (cycleisp_fast.pipelines.metrics)."""


def parse_model(text: str) -> tuple[str, Path | None]:
    """``"NAME"`` or ``"NAME=WEIGHTS"`` -> ``(NAME, WEIGHTS or None)``, NAME a registry name."""
    name, separator, weights = text.partition("=")
    if name not in DENOISERS:
        raise argparse.ArgumentTypeError(
            f"unknown model {name!r} in {text!r}; expected NAME or NAME=WEIGHTS with NAME one of {', '.join(DENOISERS)}"
        )
    if separator and not weights:
        raise argparse.ArgumentTypeError(f"no weights file after '=' in {text!r}")
    return name, Path(weights) if weights else None


def model_labels(specs: list[tuple[str, Path | None]]) -> list[str]:
    """A column label per model: its name, or ``name=<weights file name>`` when the name occurs more than once."""
    names = [name for name, _ in specs]
    return [name if names.count(name) == 1 or weights is None else f"{name}={weights.name}" for name, weights in specs]


def rounded_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """``(1, 3, H, W)`` in [0, 1] -> the same, rounded to the nearest of the 256 levels of an 8-bit image."""
    return torch.from_numpy(quantize(images[0], 8)).permute(2, 0, 1)[None] / 255.0


def score_item(
    item: dict, models: list[torch.nn.Module], domain: str, layout: str, args: argparse.Namespace
) -> list[tuple[float, float]]:
    """``(psnr, ssim)`` of each model's result on one dataset item."""
    if "clean" not in item:
        raise ValueError(f"item {item.get('name')!r} has no clean image to score against")
    if layout == "sidd-val-raw":  # the (1, h, w) mosaic as the file stores it, denoised at its full size
        clean = item["clean"][None]
        outputs = [denoise_item(model, item, tile=args.tile, overlap=args.overlap)[None] for model in models]
    elif domain == "raw":
        clean, noisy = (pack_rggb(item[key], item["pattern"]) for key in ("clean", "noisy"))
        if item.get("shot") is not None and item.get("read") is not None:
            shot, read = float(item["shot"]), float(item["read"])
        else:
            shot, read = (float(level[0]) for level in estimate_raw_noise(noisy))
        outputs = [
            denoise_raw(model, noisy.clamp(0, 1), shot, read, tile=args.tile, overlap=args.overlap) for model in models
        ]
    else:
        clean, noisy = item["clean"][None], item["noisy"][None]
        outputs = [denoise_srgb(model, noisy, tile=args.tile, overlap=args.overlap) for model in models]
    if args.output_dtype == "uint8":
        outputs = [rounded_to_uint8(output) for output in outputs]
    measure = SSIM_METRICS[args.ssim]
    return [(float(psnr(output, clean)[0]), float(measure(output, clean)[0])) for output in outputs]


def summary_table(rows: list[tuple[str, str, float, float]], labels: list[str]) -> str:
    """Markdown table: per model, the number of images, mean PSNR (finite values) and mean SSIM."""
    cells = [["model", "images", "PSNR (dB)", "SSIM"]]
    for label in labels:
        psnrs = torch.tensor([row[2] for row in rows if row[1] == label], dtype=torch.float64)
        ssims = torch.tensor([row[3] for row in rows if row[1] == label], dtype=torch.float64)
        infinite = int(torch.isinf(psnrs).sum())
        mean_psnr = mean_finite(psnrs)
        psnr_text = "-" if math.isnan(mean_psnr) else f"{mean_psnr:.2f}"
        cells.append(
            [
                label,
                str(len(psnrs)),
                psnr_text + (f" ({infinite} inf skipped)" if infinite else ""),
                f"{float(ssims.mean()):.4f}" if len(ssims) else "-",
            ]
        )
    return "\n".join(markdown_table(cells, text_columns=1))


def write_scores(path: Path, rows: list[tuple[str, str, float, float]]) -> None:
    """The per-image CSV (:data:`CSV_COLUMNS`), atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            writer.writerows(
                [image, model, repr(psnr_value), repr(ssim_value)] for image, model, psnr_value, ssim_value in rows
            )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``eval`` options to ``parser``."""
    parser.add_argument("data", type=Path, metavar="DATA", help="the dataset folder")
    parser.add_argument(
        "--layout", choices=("auto",) + LAYOUTS, default="auto", help="the dataset's layout (default: detected)"
    )
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        type=parse_model,
        default=[],
        metavar="NAME[=WEIGHTS]",
        help=f"a model to score (repeatable): {', '.join(DENOISERS)}; WEIGHTS an official or "
        "trainer checkpoint (all but 'noisy' need one). 'noisy' is always scored",
    )
    parser.add_argument("--csv", type=Path, metavar="FILE", help="write every image's scores to this CSV")
    parser.add_argument(
        "--output-dtype",
        dest="output_dtype",
        choices=("float", "uint8"),
        default="float",
        help="score the output as the model gives it, clamped to [0, 1] (float, default: CycleISP's, "
        "MPRNet's and Restormer's SIDD scripts), or rounded to 8 bits first (uint8: as a PNG or a "
        "SIDD submission holds it); sRGB only",
    )
    parser.add_argument(
        "--ssim",
        choices=tuple(SSIM_METRICS),
        default="skimage",
        help="skimage (default): scikit-image's Gaussian SSIM, per channel; matlab: MATLAB's ssim as "
        "evaluate_SIDD.m calls it (an RGB image taken as a volume)",
    )
    parser.add_argument(
        "--pattern",
        type=parse_sidd_patterns,
        metavar="PATTERN[,...]",
        help="sidd-val-raw (required) and sidd-raw: the Bayer pattern of every image, or for "
        "sidd-val-raw one per image, comma-separated: RGGB/BGGR/GRBG/GBRG or SIDD phone codes "
        "(GP, N6, G4: BGGR; IP: RGGB; S6: GRBG). sidd-raw reads each image's from its metadata "
        "file by default",
    )
    add_tiling_arguments(parser, tile=DEFAULT_TILE, overlap=DEFAULT_OVERLAP)
    parser.add_argument("--limit", type=_positive_int, metavar="N", help="score only the first N pairs")
    parser.add_argument("--device", type=parse_device, default="cpu", help="cpu (default), cuda or cuda:<index>")
    parser.add_argument("--backend", choices=BACKENDS, help="backend of the fused ops (default: the one in force)")
    add_optimize_arguments(parser)


def _open_dataset(args: argparse.Namespace, parser: argparse.ArgumentParser):
    try:
        layout = detect_layout(args.data) if args.layout == "auto" else args.layout
        if layout.startswith("dnd"):
            parser.error(
                f"{args.data} is DND ({layout}), which has no public clean images: it is scored by its "
                f"online server (https://noise.visinf.tu-darmstadt.de); write its submission with "
                f"cycleisp-fast denoise {args.data} -o OUT --model ... and upload the files of OUT/bundled"
            )
        options = {}
        if args.pattern is not None:
            if layout not in ("sidd-raw", "sidd-val-raw"):
                parser.error(f"--pattern applies to the sidd-raw and sidd-val-raw layouts, not to {layout}")
            if layout == "sidd-raw" and len(args.pattern) > 1:
                parser.error("sidd-raw takes one --pattern for every image (or none: each image's metadata file)")
            options["pattern"] = args.pattern[0] if layout == "sidd-raw" else args.pattern
        return layout, open_pairs(args.data, layout, **options)
    except (OSError, ValueError) as error:
        parser.error(str(error))


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Scores the baseline and every ``--model`` on the pairs, prints the summary table, writes the ``--csv``.

    Returns the exit code: 0, or 1 when a pair cannot be read or scored (then no CSV is written).
    """
    check_tiling(args, parser)
    check_optimize_arguments(args, parser)
    if args.csv is not None and (problem := output_problem(args.csv, folder=False)):
        parser.error(f"--csv: {problem}")
    layout, dataset = _open_dataset(args, parser)
    domain = "raw" if layout.endswith("-raw") else "srgb"
    if domain == "raw" and args.output_dtype == "uint8":
        parser.error(f"--output-dtype uint8 rounds sRGB outputs to 8 bits; the {layout} dataset {args.data} is RAW")
    specs = [(BASELINE, None)] + [spec for spec in args.models if spec != (BASELINE, None)]
    for name, _ in specs:
        if DENOISERS[name].domain not in (domain, "any"):
            parser.error(
                f"model {name} denoises {DENOISERS[name].domain} images; the {layout} dataset {args.data} "
                f"holds {domain} pairs"
            )
    labels = model_labels(specs)
    if len(set(labels)) != len(labels):
        parser.error(f"a model is given twice with the same weights: {labels}")
    try:
        models = [
            load_denoiser(
                name,
                weights,
                device=args.device,
                backend=args.backend,
                optimized=args.optimize,
                precision=args.precision,
            )
            for name, weights in specs
        ]
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    rows = []
    for index in tqdm(range(count), desc="eval", unit="pair", file=sys.stderr):
        try:
            item = dataset[index]
            scores = score_item(item, models, domain, layout, args)
        except INPUT_ERRORS as error:
            print(f"error: pair {index} of {args.data}: {error}", file=sys.stderr)
            return 1
        rows += [(item["name"], label, *score) for label, score in zip(labels, scores)]
    if args.csv is not None:
        write_scores(args.csv, rows)
    print(f"{args.data} ({layout}): {count} pair(s); PSNR and SSIM ({args.ssim}) of the {args.output_dtype} outputs")
    print(summary_table(rows, labels))
    return 0
