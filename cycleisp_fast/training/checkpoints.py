"""Training checkpoints, ``last.pt``: dicts ``{"model", "model_kwargs", "state_dict", "optimizer", "scheduler",
"scaler", "step", "config", "rng"}`` and, with ``ema_decay`` > 0, ``"ema_state_dict"`` (the weight average, which
``denoise`` and ``eval`` load); ``"model"`` names the network (``cycleisp-srgb``, ``cycleisp-raw``,
``aindnet``, ``cycleisp-rgb2raw``, ``cycleisp-raw2rgb``, ``cycleisp-isp``) and ``"model_kwargs"`` its size arguments.
:func:`load_checkpoint` reads one and checks its fields; :class:`RunFolderError` is what a run folder that does not
fit the request raises.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from cycleisp_fast.data.files import describe_read_error

CHECKPOINT_NAME = "last.pt"


class RunFolderError(ValueError):
    """A run folder that does not fit the request: a checkpoint to overwrite, nothing to resume, another config."""


CHECKPOINT_FIELDS = {
    "model": str,
    "model_kwargs": dict,
    "state_dict": dict,
    "optimizer": dict,
    "scheduler": dict,
    "scaler": dict,
    "step": int,
    "config": dict,
    "rng": dict,
}
"""What ``last.pt`` holds (see :func:`cycleisp_fast.training.loop._save`), by type."""


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """A training checkpoint (``torch.load`` with ``weights_only=True``), its fields checked.

    Raises:
        RunFolderError: the file cannot be read (truncated, empty, not a torch file) or lacks a field or holds one
            of the wrong type; the message names the file.
    """
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated, empty, not a torch file, or objects weights_only refuses
        raise RunFolderError(
            f"{path} could not be read as a training checkpoint ({describe_read_error(error)})"
        ) from error
    if not isinstance(checkpoint, dict):
        raise RunFolderError(f"{path} is not a training checkpoint: it holds a {type(checkpoint).__name__}, not a dict")
    problems = [
        f"{key} (missing)"
        if key not in checkpoint
        else f"{key} ({type(checkpoint[key]).__name__}, expected {kind.__name__})"
        for key, kind in CHECKPOINT_FIELDS.items()
        if key not in checkpoint or not isinstance(checkpoint[key], kind) or isinstance(checkpoint[key], bool)
    ]
    if problems:
        raise RunFolderError(f"{path} is not a training checkpoint of this package: " + ", ".join(problems))
    if checkpoint["step"] < 0 or not isinstance(checkpoint["rng"].get("torch"), torch.Tensor):
        raise RunFolderError(f"{path} is not a training checkpoint of this package: bad step or rng state")
    return checkpoint
