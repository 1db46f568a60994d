"""Convert a model's weights into a plain PyTorch state dict, once, so that they load without the original format.

WEIGHTS is anything `denoise --weights` takes for the model: AINDNet's official TensorFlow 1 checkpoint (its
folder holding TF's `checkpoint` file, e.g. checkpoint/SIDD_transfer/, or a prefix such as .../model.ckpt-1000;
reading it needs TensorFlow: pip install 'cycleisp_fast[tf]'), an official CycleISP PyTorch checkpoint, or a
checkpoint of cycleisp-fast train. OUT gets the model's state dict (torch.save of model.state_dict(): the
official key names, loadable by `denoise --weights OUT`, `load_official` or `model.load_state_dict`), written
atomically. The converted model is run once on a small image to check that it is finite.

Examples:
  cycleisp-fast convert --model aindnet --weights AINDNet/code/checkpoint/SIDD_transfer -o aindnet_sidd.pt
  cycleisp-fast denoise photo.png -o out --model aindnet --weights aindnet_sidd.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from cycleisp_fast.data.files import output_problem, save_torch
from cycleisp_fast.pipelines.denoisers import DENOISERS, load_denoiser

CONVERTIBLE = tuple(name for name in DENOISERS if name != "noisy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``convert`` options to ``parser``: ``--model``, ``--weights`` and ``-o/--output``."""
    parser.add_argument("--model", required=True, choices=CONVERTIBLE, help="the network the weights are for")
    parser.add_argument(
        "--weights",
        required=True,
        metavar="WEIGHTS",
        help="a TF checkpoint folder or prefix (aindnet), or a PyTorch checkpoint file",
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT", help="the PyTorch file to write (.pt / .pth)"
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Loads the weights, checks the model's output on a random ``(1, C, 16, 16)`` probe, saves its state dict.

    Returns the exit code, 0; a bad ``-o``, unloadable weights or a non-finite output end with ``parser.error``.
    """
    if args.output.is_dir():
        parser.error(f"-o {args.output} is a folder; give the file to write, e.g. {args.output / 'weights.pt'}")
    if problem := output_problem(args.output, folder=False):
        parser.error(f"-o: {problem}")
    try:
        model = load_denoiser(args.model, args.weights)
    except (FileNotFoundError, ValueError) as error:
        parser.error(str(error))
    channels = 4 if DENOISERS[args.model].domain == "raw" else 3
    probe = torch.rand(1, channels, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = model(probe, torch.full_like(probe, 1e-3)) if channels == 4 else model(probe)
    if not torch.isfinite(out).all():
        parser.error(f"weights {args.weights} give non-finite outputs for {args.model}; nothing written")
    save_torch(model.state_dict(), args.output)
    count = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.output}: {args.model}, {len(model.state_dict())} tensors, {count:,} parameters")
    return 0
