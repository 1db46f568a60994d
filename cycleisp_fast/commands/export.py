"""Export a network to ONNX or to a torch.export program (.pt2), with dynamic batch, height and width.

MODEL is a denoiser of `denoise` (cycleisp-srgb, cycleisp-raw, aindnet: WEIGHTS as `denoise --weights` takes
them, official or trained) or one of CycleISP's ISP networks (rgb2raw, ccm, raw2rgb: WEIGHTS its official
checkpoint, e.g. rgb2raw_joint.pth). The format is OUT's suffix:

  .onnx   the official computation in standard ONNX operators (opset 18), for onnxruntime and other runtimes;
          needs no cycleisp_fast to run. `denoise --onnx OUT` runs it.
  .pt2    a torch.export program (torch.export.load); the official computation too, or with --fused this
          package's fused operators (import cycleisp_fast before loading it).

The export is checked before it is written: the exported graph runs at a second size and must match the
model's output within 1e-4 (float32 rounding is ~1e-6). Inputs and output are named (noisy[, variance] ->
denoised; srgb -> raw; srgb -> ccm_features; raw, ccm_features -> srgb); rgb2raw and ccm need even H and W.

Examples:
  cycleisp-fast export --model cycleisp-srgb --weights sidd_rgb.pth -o sidd_rgb.onnx
  cycleisp-fast export --model aindnet --weights aindnet_sidd.pt -o aindnet.pt2 --fused
  cycleisp-fast denoise photo.png -o out --onnx sidd_rgb.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cycleisp_fast.data.files import output_problem
from cycleisp_fast.pipelines.export import NETWORKS, export_format, export_model, load_network


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``export`` options to ``parser``: ``--model``, ``--weights``, ``-o/--output`` and ``--fused``."""
    parser.add_argument("--model", required=True, choices=list(NETWORKS), help="the network to export")
    parser.add_argument("--weights", required=True, metavar="WEIGHTS", help="its checkpoint (as denoise takes it)")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT", help="the file to write: .onnx or .pt2"
    )
    parser.add_argument(
        "--fused", action="store_true", help=".pt2 only: keep the fused ops (cycleisp_fast::* operators)"
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Loads the network, exports it, checks the export at a second size and writes it; returns 0.

    A bad option or unloadable weights end with ``parser.error``; an export that does not match raises.
    """
    try:
        kind = export_format(args.output)
    except ValueError as error:
        parser.error(f"-o: {error}")
    if args.fused and kind != "pt2":
        parser.error("--fused keeps this package's custom operators, which ONNX cannot hold: use -o FILE.pt2")
    if problem := output_problem(args.output, folder=False):
        parser.error(f"-o: {problem}")
    try:
        model = load_network(args.model, args.weights)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    result = export_model(model, args.model, args.output, fused=args.fused)
    print(
        f"wrote {result.path}: {result.network} as {result.format}"
        f"{' (fused ops)' if args.fused else ''}, checked at a second size (max difference {result.max_error:.2g})"
    )
    return 0
