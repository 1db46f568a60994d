"""The ``cycleisp-fast`` command (also ``python -m cycleisp_fast``).

Each subcommand is a module with ``add_arguments(parser)`` and ``run(args, parser) -> exit code``; to add
one, add it to :data:`SUBCOMMANDS`. ``run`` gets its own parser to report problems found after parsing
with ``parser.error`` (exit code 2, like any bad option).
"""

from __future__ import annotations

import argparse
import importlib
from typing import Sequence

SUBCOMMANDS = {
    "selftest": ("cycleisp_fast.selftest", "check every fused backend against the reference on this machine"),
    "bench": ("cycleisp_fast.bench.cli", "kernel microbenchmarks: eager vs torch.compile vs fused, with the roofline"),
    "synth": ("cycleisp_fast.commands.synth", "synthesize realistic noisy/clean pairs (Unprocessing or learned CycleISP)"),
    "denoise": ("cycleisp_fast.commands.denoise", "denoise images or RAW files with a chosen model and weights"),
    "eval": ("cycleisp_fast.commands.evaluate", "PSNR/SSIM of models over a folder of pairs, per-image CSV and summary"),
    "train": ("cycleisp_fast.commands.train", "train CycleISP or AINDNet networks from a config file (torchrun + DDP)"),
    "convert": ("cycleisp_fast.commands.convert", "convert weights (e.g. AINDNet's TF checkpoint) into a PyTorch file"),
}
"""Subcommand name -> (module, one-line help)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cycleisp-fast", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, summary) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        subparser = subparsers.add_parser(name, help=summary, description=module.__doc__,
                                          formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(subparser)
        subparser.set_defaults(run=module.run, parser=subparser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``cycleisp-fast <command> [options]``; returns its exit code (argparse exits 2 on bad arguments)."""
    args = build_parser().parse_args(argv)
    return args.run(args, args.parser)
