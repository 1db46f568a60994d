"""The ``cycleisp-fast`` command (also ``python -m cycleisp_fast``).

Each subcommand is a module with ``add_arguments(parser)`` and ``run(args, parser) -> exit code``; to add
one, add it to :data:`SUBCOMMANDS`. ``run`` gets its own parser to report problems found after parsing
with ``parser.error`` (exit code 2, like any bad option).

User errors that surface later as exceptions (:data:`USER_ERRORS`: a file that is missing, unreadable or
holds the wrong data, a value out of range, memory the machine does not have) print one line,
``cycleisp-fast <command>: error: <message>``, and exit with status 1; a traceback means a bug. ``--debug`` (or
``CYCLEISP_FAST_DEBUG=1``) shows the traceback of a user error too.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import Sequence

import torch

from cycleisp_fast import __version__

SUBCOMMANDS = {
    "selftest": ("cycleisp_fast.selftest", "check every fused backend against the reference on this machine"),
    "bench": ("cycleisp_fast.bench.cli", "kernel microbenchmarks: eager vs torch.compile vs fused, with the roofline"),
    "synth": (
        "cycleisp_fast.commands.synth",
        "synthesize realistic noisy/clean pairs (Unprocessing or learned CycleISP)",
    ),
    "denoise": ("cycleisp_fast.commands.denoise", "denoise images or RAW files with a chosen model and weights"),
    "eval": (
        "cycleisp_fast.commands.evaluate",
        "PSNR/SSIM of models over a folder of pairs, per-image CSV and summary",
    ),
    "prepare": (
        "cycleisp_fast.commands.prepare",
        "prepare real RAW/sRGB pairs (MIT-Adobe FiveK) for training the ISP networks",
    ),
    "train": ("cycleisp_fast.commands.train", "train CycleISP or AINDNet networks from a config file (torchrun + DDP)"),
    "convert": ("cycleisp_fast.commands.convert", "convert weights (e.g. AINDNet's TF checkpoint) into a PyTorch file"),
    "export": ("cycleisp_fast.commands.export", "export a network to ONNX or torch.export (.pt2), dynamic sizes"),
    "calibrate": (
        "cycleisp_fast.commands.calibrate",
        "calibrate a camera's noise profile (ELD-style) from dark and flat-field frames",
    ),
}
"""Subcommand name -> (module, one-line help)."""
USER_ERRORS = (OSError, ValueError, ImportError, MemoryError, torch.OutOfMemoryError)
"""What a bad input, option or environment raises (the messages name the file or argument): reported in one line.
Every error class of the package derives from one of these (DataFileError, ConfigError, ... are ValueErrors)."""
DEBUG_VARIABLE = "CYCLEISP_FAST_DEBUG"


_ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|obj):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(doc: str | None) -> str | None:
    """A module docstring as terminal help: reStructuredText roles and literals without their markup
    (``:func:`foo``` -> foo, ````--seed```` -> --seed)."""
    if doc is None:
        return None
    return _LITERAL.sub(r"\1", _ROLE.sub(r"\1", doc))


def build_parser() -> argparse.ArgumentParser:
    """The ``cycleisp-fast`` parser: ``--version``, ``--debug`` and one subparser per entry of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(prog="cycleisp-fast", description=plain_text(__doc__.splitlines()[0]))
    parser.add_argument(
        "--version", action="version", version=f"cycleisp-fast {__version__} (torch {torch.__version__})"
    )
    parser.add_argument(
        "--debug", action="store_true", help=f"show the Python traceback of an error (also: {DEBUG_VARIABLE}=1)"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, summary) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        subparser = subparsers.add_parser(
            name,
            help=summary,
            description=plain_text(module.__doc__),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(subparser)
        subparser.set_defaults(run=module.run, parser=subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``cycleisp-fast <command> [options]``; returns its exit code (argparse exits 2 on bad arguments)."""
    args = build_parser().parse_args(argv)
    debug = args.debug = args.debug or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        return args.run(args, args.parser)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"cycleisp-fast {args.command}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if debug:
            raise
        message = str(error) or type(error).__name__
        if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
            message = f"out of memory ({message}); try a smaller --tile, batch or input"
        print(f"cycleisp-fast {args.command}: error: {message} (--debug shows the traceback)", file=sys.stderr)
        return 1
