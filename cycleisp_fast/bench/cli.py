"""Kernel microbenchmarks: eager vs torch.compile vs the fused backends, with the roofline.

Every provider of a case is timed in the same run as the machine's copy bandwidth, so the speedups and the
fractions of the copy bandwidth are comparable. Examples:

    python -m cycleisp_fast.bench --ops bayer_pack bayer_mosaic --min-run-time 0.5
    cycleisp-fast bench --ops denoisenet_srgb denoisenet_raw aindnet   # whole networks: inference, training step
    cycleisp-fast bench --device cuda --dtypes float32 float16 --sizes 8x3x2048x2048
    cycleisp-fast bench --quick
"""

from __future__ import annotations

import argparse
import os
from typing import Sequence

import torch

from cycleisp_fast.arguments import parse_device
from cycleisp_fast.bench.measure import PROVIDERS, flush_unavailable, measure_case, measure_rates, note
from cycleisp_fast.bench.networks import measure_network
from cycleisp_fast.bench.report import dtype_name, format_size, format_table, make_rows, write_csv, write_plot
from cycleisp_fast.cases import MODES, Case, Size, all_cases, case_families

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEFAULT_MIN_RUN_TIME = 1.0
QUICK_MIN_RUN_TIME = 0.05
RESULTS_DIR = "bench_results"


def parse_size(text: str) -> Size:
    """``"4x1x1024x1024"`` -> ``(4, 1, 1024, 1024)``."""
    parts = text.lower().split("x")
    if not all(part.isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError(f"expected positive integers joined by 'x', like 4x1x1024x1024; got {text!r}")
    return tuple(int(part) for part in parts)


def parse_seconds(text: str) -> float:
    """A positive number of seconds."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options, for ``python -m cycleisp_fast.bench`` and ``cycleisp-fast bench``."""
    cases = all_cases()
    default = [name for name, case in cases.items() if not case.opt_in]
    parser.add_argument(
        "--ops",
        nargs="+",
        choices=list(cases),
        default=default,
        metavar="OP",
        help=f"cases to time (default: all but the opt-in whole networks and pipelines "
        f"{', '.join(name for name in cases if name not in default)}): {', '.join(cases)}",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        type=parse_size,
        metavar="SIZE",
        help="input shapes like 4x1x1024x1024; each case takes those that fit it "
        "(default: per case, e.g. N=4 images of 1024x1024)",
    )
    parser.add_argument(
        "--dtypes",
        nargs="+",
        choices=list(DTYPES),
        default=["float32"],
        metavar="DTYPE",
        help=f"floating dtypes of the inputs: {', '.join(DTYPES)} (default: float32); "
        "cases of RAW samples keep their own",
    )
    parser.add_argument("--device", type=parse_device, default="cpu", help="cpu (default), cuda or cuda:<index>")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        default=list(MODES),
        metavar="MODE",
        help=f"{' and/or '.join(MODES)} (default: both)",
    )
    parser.add_argument(
        "--providers",
        nargs="+",
        choices=PROVIDERS,
        default=list(PROVIDERS),
        metavar="PROVIDER",
        help=f"implementations to time: {', '.join(PROVIDERS)} (default: every one that runs here)",
    )
    parser.add_argument(
        "--min-run-time",
        type=parse_seconds,
        metavar="SECONDS",
        help=f"timing per measurement (default: {DEFAULT_MIN_RUN_TIME}; {QUICK_MIN_RUN_TIME} with --quick)",
    )
    parser.add_argument("--csv", metavar="PATH", help=f"CSV of all numbers (default: {RESULTS_DIR}/bench_<device>.csv)")
    parser.add_argument("--plot", metavar="PATH", help=f"PNG bar plot (default: {RESULTS_DIR}/bench_<device>.png)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and short timing: a smoke test")


def _case_sizes(case: Case, args: argparse.Namespace, parser: argparse.ArgumentParser) -> Sequence[Size]:
    """The sizes ``case`` runs at: those of ``--sizes`` that fit it, else its quick or default sizes."""
    if args.sizes is None:
        return case.quick_sizes if args.quick else case.default_sizes
    sizes = [size for size in args.sizes if case.fits(size)]
    if not sizes:
        given = " ".join(format_size(size) for size in args.sizes)
        parser.error(f"argument --sizes: none of {given} fits {case.name}, which takes {case.size_doc}")
    return sizes


def plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[tuple[Case, Size, torch.dtype]]:
    """Every (case, size, dtype) to time, in the order of ``--ops``."""
    cases = all_cases()
    requested = [DTYPES[name] for name in dict.fromkeys(args.dtypes)]
    return [
        (case, size, dtype)
        for case in (cases[name] for name in dict.fromkeys(args.ops))
        for size in _case_sizes(case, args, parser)
        for dtype in case.dtypes(requested)
    ]


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Times the plan, prints the table, writes the CSV and the plot. Returns the exit code."""
    work = plan(args, parser)
    device = args.device
    min_run_time = args.min_run_time or (QUICK_MIN_RUN_TIME if args.quick else DEFAULT_MIN_RUN_TIME)
    note(f"measuring the copy bandwidth of {device}")
    rates = measure_rates(device, min_run_time, matmul=any(case.flops is not None for case, _, _ in work))
    timings = []
    for case, size, dtype in work:
        note(f"timing {case.name} {format_size(size)} {dtype_name(dtype)} on {device}")
        common = (list(dict.fromkeys(args.providers)), list(dict.fromkeys(args.modes)), min_run_time)
        if case.network is None:
            timings += measure_case(case, size, dtype, device, *common)
        else:  # a training step at the case's training batch, unless the sizes were chosen (--sizes, --quick)
            train_size = size if args.quick or args.sizes else None
            timings += measure_network(case, size, dtype, device, *common, train_size=train_size)
    flush_unavailable()
    if not timings:
        note("nothing was timed: every provider was skipped (see above)")
        return 1
    rows = make_rows(timings, rates, device)
    print(format_table(rows, rates))
    stem = os.path.join(RESULTS_DIR, f"bench_{device.type}")
    csv_path, plot_path = args.csv or stem + ".csv", args.plot or stem + ".png"
    write_csv(rows, csv_path)
    print(f"\nwrote {csv_path}")
    if write_plot(rows, plot_path, case_families()):
        print(f"wrote {plot_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m cycleisp_fast.bench``: the module docstring as description, then the options."""
    parser = argparse.ArgumentParser(
        prog="python -m cycleisp_fast.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cycleisp_fast.bench [options]``; returns the exit code (argparse exits 2 on bad options)."""
    parser = build_parser()
    return run(parser.parse_args(argv), parser)
