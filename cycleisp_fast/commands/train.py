"""Train CycleISP or AINDNet networks from a config file: ``cycleisp-fast train --config demo --out runs/demo``.

A config is a TOML recipe: a packaged name (one per task: demo, denoise-srgb, denoise-raw, aindnet-synthetic,
aindnet-transfer, rgb2raw, raw2rgb, cycleisp-joint; and denoise-raw-eld, on ELD's physics-based noise) or a path;
``--set key=value`` overrides any key (``--set steps=3000 --set data.images=photos``). The run folder gets the
resolved config.toml, last.pt (the checkpoint, which the denoise and eval commands read) and log.jsonl; ``--plot
RUN`` draws a run's curves into RUN/curves.png. ``--resume`` continues a run from last.pt, bit for bit;
``--stop-after STEP`` ends a session early (e.g. a time-limited job) with a checkpoint. SIGTERM or SIGUSR1 (what
Slurm sends before a job's time runs out or it is requeued) make the trainer write its checkpoint after the current
step and exit 0; ``--auto-resume`` continues the run in --out if it has a checkpoint and starts it otherwise, so a
requeued job script needs no change (examples/slurm_train.sbatch).

Several GPUs or nodes: launch with torchrun, e.g.
``torchrun --standalone --nproc_per_node=8 -m cycleisp_fast train --config denoise-srgb --out runs/srgb``.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from cycleisp_fast import backend
from cycleisp_fast.data.files import DataFileError, output_problem
from cycleisp_fast.training import (
    CHECKPOINT_NAME,
    CONFIG_NAME,
    ConfigError,
    RunFolderError,
    distributed_from_environment,
    format_metrics,
    load_config,
    packaged_configs,
    select_device,
    train,
)
from cycleisp_fast.training.plot import plot_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``train`` options to ``parser``."""
    parser.add_argument(
        "--config",
        metavar="NAME_OR_PATH",
        help=f"a packaged config ({', '.join(packaged_configs())}) or a TOML file; with --resume it "
        f"defaults to the run folder's {CONFIG_NAME}",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. steps=500, data.images=photos, model.n_feats=32 (repeatable)",
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="the run folder: config.toml, last.pt (checkpoint), log.jsonl"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="RUN",
        help="instead of training: draw RUN's loss, learning rate and validation curves into RUN/curves.png",
    )
    parser.add_argument(
        "--auto-resume",
        action="store_true",
        help="continue the run in --out if it has a checkpoint, else start it (for jobs that are requeued)",
    )
    parser.add_argument(
        "--stop-after",
        type=int,
        metavar="STEP",
        help="stop (with a checkpoint) once this global step is done; --resume continues later",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (the GPU of this process if any, else the CPU), cpu, cuda or cuda:<index>",
    )
    parser.add_argument(
        "--backend",
        default=None,
        choices=backend.BACKENDS,
        help="backend of the fused ops (default: the one in force, CYCLEISP_FAST_BACKEND or auto)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Loads the config (``--out``'s own with a bare ``--resume``) and trains into ``--out``; returns 0.

    Rank 0 prints the last validation metrics and the checkpoint's path; a bad config, device, backend or run
    folder ends with ``parser.error``.
    """
    if args.plot is not None:
        try:
            print(f"wrote {plot_run(args.plot)}")
        except (FileNotFoundError, ValueError) as error:
            parser.error(f"--plot: {error}")
        return 0
    if args.out is None:
        parser.error("--out is required: the run folder (or --plot RUN to draw a run's curves)")
    if problem := output_problem(args.out, folder=True):
        parser.error(f"--out: {problem}")
    if args.auto_resume:
        if args.resume:
            parser.error("--auto-resume decides by itself whether to resume: leave out --resume")
        args.resume = (args.out / CHECKPOINT_NAME).is_file()
    if args.config is None:
        if not args.resume:
            parser.error("--config is required (a packaged name such as demo, or a TOML file)")
        args.config = args.out / CONFIG_NAME
        if not args.config.is_file():
            parser.error(f"--resume without --config needs {args.config}, which does not exist")
    place = distributed_from_environment()
    try:
        config = load_config(args.config, args.overrides)
        device = select_device(args.device, place)
    except ValueError as error:  # a ConfigError, or a bad --device
        parser.error(str(error))
    if args.stop_after is not None and not 0 < args.stop_after <= config["steps"]:
        parser.error(f"--stop-after must be a step in 1..{config['steps']} (the config's steps), got {args.stop_after}")
    with contextlib.ExitStack() as stack:
        if args.backend:
            try:
                stack.enter_context(backend.use_backend(args.backend))
            except RuntimeError as error:  # not built / not installed here
                parser.error(f"--backend: {error}")
        try:
            result = train(
                config, args.out, resume=args.resume, device=device, stop_after=args.stop_after, progress=args.progress
            )
        except (ConfigError, RunFolderError, DataFileError, FileNotFoundError, NotADirectoryError) as error:
            parser.error(str(error))
    if place.is_main:
        if result.stopped_by:
            print(f"stopped by {result.stopped_by} at step {result.step}; --resume or --auto-resume continues")
        if result.metrics:
            print(f"validation at step {result.step}: {format_metrics(result.metrics)}")
        print(f"checkpoint: {result.checkpoint}")
    return 0
