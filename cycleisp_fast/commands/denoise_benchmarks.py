"""``denoise`` of a benchmark: a DND folder (per-box files and bundles, resumable) or a SIDD blocks file
(``Submit*.mat`` and the Kaggle CSV), as the official submission scripts write them; see
:mod:`cycleisp_fast.commands.denoise` for the command and its options."""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import torch

from cycleisp_fast.arguments import INPUT_ERRORS, check_tiling
from cycleisp_fast.data.datasets import DND, matching_layouts
from cycleisp_fast.data.sidd_blocks import SIDDBlocks
from cycleisp_fast.data.submissions import (
    SIDD_KAGGLE_FILES,
    SIDD_SUBMISSIONS,
    write_sidd_kaggle_csv,
    write_sidd_submission,
)
from cycleisp_fast.optimization import PRECISIONS
from cycleisp_fast.pipelines.benchmarks import denoise_dnd, denoise_sidd_blocks
from cycleisp_fast.pipelines.denoisers import DENOISERS, load_denoiser
from cycleisp_fast.pipelines.export import load_exported

DND_LAYOUTS = ("dnd-srgb", "dnd-raw")


def benchmark_input(arguments: list[str], parser: argparse.ArgumentParser) -> Path | None:
    """The benchmark among the inputs, a DND folder (holding ``info.mat``) or a SIDD blocks ``.mat`` file, or None;
    a benchmark must be the only input."""
    paths = [Path(argument) for argument in arguments]
    found = [
        path
        for path in paths
        if (path.is_dir() and (path / "info.mat").is_file()) or (path.is_file() and path.suffix.lower() == ".mat")
    ]
    if found and len(paths) > 1:
        parser.error(f"{found[0]} is a benchmark (a DND folder or a SIDD blocks file): give it as the only INPUT")
    return found[0] if found else None


def add_optimize_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds ``--optimize`` and ``--precision`` (``denoise`` and ``eval``: see :func:`check_optimize_arguments`)."""
    parser.add_argument(
        "--optimize",
        action="store_true",
        help="run the model through cycleisp_fast.optimize (CPU float32: Winograd convolutions, channels_last; "
        "~1.5-2x faster, outputs within float rounding, PSNR against the model's > 100 dB; no torch.compile)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="with --optimize: float32 (default), bfloat16 (faster on CPUs with AVX-512 BF16/AMX and on GPUs, "
        "~45-55 dB against float32) or float16 (GPU)",
    )


def check_optimize_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``--precision`` needs ``--optimize``."""
    if args.precision != "float32" and not args.optimize:
        parser.error(f"--precision {args.precision} takes effect with --optimize: add it")


def resolve_model(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Sets ``args.model`` from ``--onnx FILE`` (an exported denoiser, whose metadata names it), which replaces
    ``--model`` and ``--weights``; without ``--onnx``, ``--model`` is required."""
    args.exported = None
    check_optimize_arguments(args, parser)
    if args.onnx is not None and args.optimize:
        parser.error("--optimize applies to --model/--weights; an --onnx file runs as exported")
    if args.onnx is None:
        if args.model is None:
            parser.error("--model is required (or --onnx FILE, a denoiser written by cycleisp-fast export)")
        return
    if args.model is not None or args.weights is not None:
        parser.error("--onnx replaces --model and --weights: give one or the other")
    if args.device.type != "cpu":
        parser.error("--onnx runs on the CPU (onnxruntime's CPU provider): leave out --device")
    try:
        args.exported = load_exported(args.onnx)
    except (FileNotFoundError, ValueError, ImportError) as error:
        parser.error(f"--onnx: {error}")
    if args.exported.network not in DENOISERS:
        parser.error(f"--onnx {args.onnx} holds {args.exported.network}, not a denoiser ({', '.join(DENOISERS)})")
    args.model = args.exported.network


def load_model(args: argparse.Namespace, parser: argparse.ArgumentParser) -> torch.nn.Module:
    """The denoiser the options name: the ``--onnx`` file (see :func:`resolve_model`) or ``--model``/``--weights``."""
    if args.exported is not None:
        return args.exported
    try:
        return load_denoiser(
            args.model,
            args.weights,
            device=args.device,
            backend=args.backend,
            optimized=args.optimize,
            precision=args.precision,
        )
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))


def _dnd_layout(root: Path, args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The DND layout to denoise: --layout, else the one of the model's domain that ``root`` holds."""
    held = [layout for layout in matching_layouts(root) if layout in DND_LAYOUTS]
    if not held:
        parser.error(f"the DND folder {root} holds neither images_srgb/ nor images_raw/ beside its info.mat")
    domain = DENOISERS[args.model].domain
    if args.layout == "auto":
        fitting = [layout for layout in held if domain in ("any", layout.removeprefix("dnd-"))]
        if len(fitting) > 1:
            parser.error(
                f"the DND folder {root} holds both sRGB and RAW images; say which the noisy baseline "
                "takes with --layout dnd-srgb or --layout dnd-raw"
            )
        layout = fitting[0] if fitting else held[0]
    elif args.layout in held:
        layout = args.layout
    else:
        parser.error(f"--layout {args.layout}: the DND folder {root} has no images_{args.layout.removeprefix('dnd-')}/")
    if domain not in ("any", layout.removeprefix("dnd-")):
        parser.error(f"model {args.model} denoises {domain} images; the DND folder {root} holds {layout} images")
    return layout


def run_dnd(root: Path, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Denoises the DND folder ``root`` into ``args.outdir`` (per-box files, then the bundles); returns the exit code.

    The exit code is 0, or 1 when a box cannot be read or denoised; bad options end with ``parser.error``.
    """
    check_tiling(args, parser)
    for option, value in (
        ("--pattern", args.pattern),
        ("--optional-data", args.optional_data),
        ("--shot/--read", args.shot is not None or args.read is not None),
    ):
        if value:
            parser.error(
                f"{option} does not apply to DND (its info.mat gives each image's Bayer pattern and noise level)"
            )
    layout = _dnd_layout(root, args, parser)
    try:
        dataset = DND(root, kind=layout.removeprefix("dnd-"), margin=args.margin)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    model = load_model(args, parser)
    try:
        done = denoise_dnd(dataset, model, args.outdir, tile=args.tile, overlap=args.overlap)
    except INPUT_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"{root} ({layout}, margin {args.margin}): {done.denoised} box(es) denoised, {done.skipped} already in "
        f"{args.outdir}; {done.bundles} bundle(s) written. Upload the files of {args.outdir / 'bundled'} at "
        "https://noise.visinf.tu-darmstadt.de"
    )
    return 0


def machine_specs(device: torch.device | str) -> str:
    """A one-line description of the machine the denoiser ran on (SIDD's OptionalData.MachineSpecs)."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} CPU threads, torch {torch.__version__}"


def run_sidd(path: Path, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Denoises the SIDD blocks file ``path`` into ``Submit*.mat`` and the Kaggle CSV; returns the exit code.

    The exit code is 0, or 1 when the blocks cannot be denoised; bad options end with ``parser.error``.
    """
    check_tiling(args, parser)
    if (args.shot is None) != (args.read is None):
        parser.error("give --shot and --read together")
    for option, value in (("--layout", args.layout != "auto"), ("--margin", args.margin)):
        if value:
            parser.error(f"{option} applies to DND folders, not to the SIDD blocks file {path}")
    noise = None if args.shot is None else (args.shot, args.read)
    try:
        blocks = SIDDBlocks(path, pattern=args.pattern, noise=noise)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    domain = DENOISERS[args.model].domain
    if domain not in ("any", blocks.kind):
        parser.error(
            f"model {args.model} denoises {domain} images; {path} holds SIDD {blocks.kind} blocks ({blocks.key})"
        )
    model = load_model(args, parser)
    try:
        denoised, seconds_per_megapixel = denoise_sidd_blocks(blocks, model, tile=args.tile, overlap=args.overlap)
    except INPUT_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    method = args.model if args.weights is None else f"{args.model} ({args.weights.name})"
    optional_data = {"MethodName": method, "MachineSpecs": machine_specs(args.device), **dict(args.optional_data)}
    written = [
        write_sidd_submission(args.outdir, blocks.kind, denoised, seconds_per_megapixel, optional_data),
        write_sidd_kaggle_csv(args.outdir, blocks.kind, denoised),
    ]
    print(
        f"{path}: {len(blocks)} {blocks.kind} blocks denoised ({seconds_per_megapixel:.3g} s per megapixel) into "
        f"{written[0]} and {written[1]}. Submit {SIDD_SUBMISSIONS[blocks.kind][0]} at "
        f"https://www.eecs.yorku.ca/~kamel/sidd/benchmark.php, or {SIDD_KAGGLE_FILES[blocks.kind]} at "
        f"kaggle.com/competitions/sidd-benchmark-{blocks.kind}-psnr"
    )
    return 0
