"""Loading official checkpoints key for key, and writing them back in the official layout.

The official CycleISP checkpoints are ``torch.save``d dicts, either bare state dicts or wrapped as
``{"state_dict": ...}``, with a ``module.`` prefix when saved from ``nn.DataParallel``. Each network shares one
PReLU under many names (every DAB's ``body.1`` and the trunk's and tail's activations): the checkpoint stores it
under each name, and :func:`load_official` checks that they agree. ``state_dict()`` of the models is already the
official layout, so saving it gives a checkpoint the official code loads, and a round trip is lossless.

AINDNet's official checkpoint is a TensorFlow 1 checkpoint: :func:`load_official` reads it through
:mod:`cycleisp_fast.models.tf_checkpoint` when given its folder or prefix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from cycleisp_fast.models.tf_checkpoint import read_aindnet_tf_checkpoint, tf_checkpoint_prefix

OPTIONAL_KEYS = {
    "Raw2Rgb": ("conv1x1.0.weight", "conv1x1.0.bias"),  # never used in the forward
    "CCM": ("blur.weight",),  # the fixed Gaussian, rebuilt by the constructor when absent
}
"""Keys a checkpoint may lack, per model class name: the model keeps its own values for them."""
_LISTED = 8


def read_state_dict(checkpoint: str | os.PathLike | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state dict in ``checkpoint`` (a path to a ``torch.save`` file, or a loaded dict): the
    ``{"state_dict": ...}`` wrapper removed and a ``module.`` prefix stripped.

    Example:
        >>> wrapped = {"state_dict": {"module.head.0.weight": torch.zeros(2), "module.head.0.bias": torch.zeros(1)}}
        >>> list(read_state_dict(wrapped))
        ['head.0.weight', 'head.0.bias']
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        try:
            checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except FileNotFoundError:  # says which file
            raise
        except Exception as error:  # truncated or not a torch file
            raise ValueError(
                f"checkpoint {os.fspath(checkpoint)!r} could not be read as a torch checkpoint: "
                f"{type(error).__name__}: {error}"
            ) from error
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"checkpoint must be a path or a state dict, got {type(checkpoint).__name__}")
    if "state_dict" in checkpoint and isinstance(checkpoint["state_dict"], Mapping):
        checkpoint = checkpoint["state_dict"]
    state = {}
    for key, value in checkpoint.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"checkpoint entry {key!r} must be a tensor, got {type(value).__name__}")
        state[key.removeprefix("module.")] = value
    return state


def _listing(what: str, items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED]) + (f", ... ({len(items)} in all)" if len(items) > _LISTED else "")
    return f"{what}: {shown}"


def is_tf_checkpoint(checkpoint) -> bool:
    """Whether ``checkpoint`` names a TensorFlow checkpoint (a folder, or a prefix beside its ``.index``)."""
    return isinstance(checkpoint, (str, os.PathLike)) and (
        Path(checkpoint).is_dir() or tf_checkpoint_prefix(checkpoint) is not None
    )


def load_official(model: nn.Module, checkpoint: str | os.PathLike | Mapping[str, Tensor]) -> nn.Module:
    """Loads an official checkpoint into ``model`` (in place; returns it), key for key.

    Accepts the ``{"state_dict": ...}`` wrapper and bare dicts, strips ``module.``, checks that every alias of a
    shared parameter (the network's one PReLU) holds the same values, ignores Raw2Rgb's unused ``conv1x1`` and
    keeps CCM's blur when the checkpoint lacks them, and refuses non-finite weights. For
    :class:`~cycleisp_fast.models.AINDNet` it also takes the official TensorFlow checkpoint: its folder (holding
    TF's ``checkpoint`` file) or a prefix (``.../model.ckpt-NNNN``), read with TensorFlow (see
    :mod:`cycleisp_fast.models.tf_checkpoint`). Raises ``ValueError`` listing the missing, unexpected and
    mis-shaped keys, or the aliases that disagree; nothing is loaded then.

    Example:
        >>> from cycleisp_fast.models import DenoiseNet
        >>> model = load_official(DenoiseNet(raw=False), {"state_dict": DenoiseNet(raw=False).state_dict()})
    """
    if is_tf_checkpoint(checkpoint):
        if type(model).__name__ != "AINDNet":
            raise ValueError(
                f"{os.fspath(checkpoint)} is a TensorFlow checkpoint, the format of AINDNet's official "
                f"weights; {type(model).__name__}'s official weights are PyTorch files"
            )
        state = read_aindnet_tf_checkpoint(checkpoint)
    else:
        state = read_state_dict(checkpoint)
    expected = model.state_dict(keep_vars=True)
    optional = set(OPTIONAL_KEYS.get(type(model).__name__, ()))
    name = type(model).__name__
    problems = []
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    for what, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", misshaped)):
        if items:
            problems.append(_listing(what, items))
    if problems:
        raise ValueError(f"checkpoint does not fit {name}: " + "; ".join(problems))
    non_finite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if non_finite:
        raise ValueError(
            "checkpoint holds non-finite (NaN or infinite) weights, which would make every output NaN: "
            + _listing("in", non_finite)
        )
    aliases: dict[int, list[str]] = {}
    for key, tensor in expected.items():
        if key in state:
            aliases.setdefault(id(tensor), []).append(key)
    for keys in aliases.values():
        differing = [k for k in keys[1:] if not torch.equal(state[keys[0]], state[k])]
        if differing:
            raise ValueError(
                f"checkpoint does not fit {name}: one shared parameter is stored under {len(keys)} names "
                f"but with different values: " + _listing(f"these differ from {keys[0]}", differing)
            )
    with torch.no_grad():
        for key, value in state.items():
            expected[key].copy_(value)
    return model
