"""What the command line's subcommands share: argument types for argparse, checks of option combinations, and the
errors a bad input file raises. Every subcommand (``commands/``, ``bench``) takes them from here.

Example::

    parser.add_argument("--device", type=parse_device, default="cpu")
    args = parser.parse_args(["--device", "cuda:1"])  # error unless this machine has CUDA
"""

from __future__ import annotations

import argparse

import torch

INPUT_ERRORS = (OSError, ValueError, RuntimeError)
"""What a bad input raises (missing, corrupt, unsupported, too large for the device)."""


def parse_device(text: str) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:1"`` -> a device this machine has (argparse type)."""
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:<index>; got {text!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f"got {text!r}, but CUDA is not available here (torch.cuda.is_available() is False)"
        )
    return device


def add_tiling_arguments(parser: argparse.ArgumentParser, *, tile: int, overlap: int) -> None:
    """Adds ``--tile`` and ``--overlap`` (tiled inference) with these defaults; check them with :func:`check_tiling`."""
    tile_help = f"tile size in pixels of the model's input (default {tile})"
    parser.add_argument("--tile", type=int, default=tile, help=tile_help)
    overlap_help = f"context kept around each tile, in pixels (default {overlap})"
    parser.add_argument("--overlap", type=int, default=overlap, help=overlap_help)


def check_tiling(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``--tile`` / ``--overlap`` must satisfy ``tile > 2 * overlap >= 0`` (each tile keeps its centre)."""
    if args.overlap < 0 or args.tile <= 2 * args.overlap:
        parser.error(
            f"--tile must be larger than twice --overlap, and --overlap >= 0; got --tile {args.tile} "
            f"--overlap {args.overlap}"
        )
