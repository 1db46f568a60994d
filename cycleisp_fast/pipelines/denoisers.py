"""Denoising models for inference: a registry, weight loading, tiled denoising.

Registry (:data:`DENOISERS`):

=================  ==========  ==========================================================================
``noisy``          any         the identity: the noisy input itself, the baseline of every evaluation
``cycleisp-srgb``  sRGB        CycleISP's ``DenoiseNet(raw=False)``
``cycleisp-raw``   RAW         CycleISP's ``DenoiseNet(raw=True)``: packed RGGB plus the variance map
                               ``shot * noisy + read``
``aindnet``        sRGB        AINDNet, which estimates its own noise map
=================  ==========  ==========================================================================

Weights (:func:`load_denoiser`) are either an official checkpoint (a state dict, bare or wrapped as
``{"state_dict": ...}``, or for AINDNet the official TensorFlow checkpoint folder or prefix, loaded key for key by
:func:`~cycleisp_fast.models.load_official` into the default-size model) or one written by this package's trainer:
a dict ``{"model": registry name, "model_kwargs": constructor keyword arguments, "state_dict": ...}``, from which
the model is built at the size it was trained at.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from cycleisp_fast.checks import check_backend_argument, check_choice, check_tensor
from cycleisp_fast.data.files import describe_read_error
from cycleisp_fast.models import AINDNet, DenoiseNet, load_official
from cycleisp_fast.models.checkpoints import is_tf_checkpoint
from cycleisp_fast.optimization import PRECISIONS, OptimizedModel, optimize
from cycleisp_fast.pipelines.tiling import tiled_apply

DEFAULT_TILE = 512
DEFAULT_OVERLAP = 32
MAX_PARAMETERS = 200_000_000
"""The most parameters a trainer checkpoint's ``model_kwargs`` may imply (the official networks: 2.6 M to 13.8 M):
the model is first built on the meta device to count them, so a file asking for a huge network is refused before
anything is allocated."""


class NoisyBaseline(nn.Module):
    """The identity, ``forward(noisy, variance=None) -> noisy``, in either domain: scoring it scores the input."""

    def forward(self, noisy: Tensor, variance: Tensor | None = None) -> Tensor:
        """``noisy`` itself, unchanged; ``variance`` is ignored."""
        return noisy


@dataclass(frozen=True)
class Denoiser:
    """One entry of the registry: how to build the model, and the domain it denoises (``"srgb"``, ``"raw"``
    or ``"any"``)."""

    build: Callable[..., nn.Module]
    domain: str
    summary: str


def _cycleisp(raw: bool) -> Callable[..., nn.Module]:
    def build(*, backend: str | None = None, **model_kwargs) -> nn.Module:
        if "raw" in model_kwargs and model_kwargs.pop("raw") is not raw:
            raise ValueError(f"model_kwargs say raw={not raw}, but this model is DenoiseNet(raw={raw})")
        return DenoiseNet(raw, backend=backend, **model_kwargs)

    return build


def _noisy_baseline(*, backend: str | None = None, **model_kwargs) -> nn.Module:
    if model_kwargs:
        raise ValueError(f"the noisy baseline takes no model_kwargs, got {sorted(model_kwargs)}")
    return NoisyBaseline()


DENOISERS = {
    "noisy": Denoiser(_noisy_baseline, "any", "the noisy input itself (the baseline)"),
    "cycleisp-srgb": Denoiser(_cycleisp(raw=False), "srgb", "CycleISP DenoiseNet for sRGB images"),
    "cycleisp-raw": Denoiser(
        _cycleisp(raw=True), "raw", "CycleISP DenoiseNet for packed RGGB RAW, given a noise level"
    ),
    "aindnet": Denoiser(AINDNet, "srgb", "AINDNet for sRGB images (estimates its own noise map)"),
}
"""Registry name -> :class:`Denoiser`."""


def _read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated, not a torch file, or holding objects weights_only refuses
        raise ValueError(
            f"weights {path} could not be read as a torch checkpoint: {describe_read_error(error)}"
        ) from error
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"weights {path} must hold a dict (a state dict or a trainer checkpoint), got {type(checkpoint).__name__}"
        )
    return checkpoint


def _is_trainer_checkpoint(checkpoint: dict) -> bool:
    return isinstance(checkpoint.get("model"), str) and isinstance(checkpoint.get("state_dict"), dict)


def _build_bounded(entry: Denoiser, model_kwargs: dict, backend: str | None) -> nn.Module:
    """``entry.build(**model_kwargs)`` once the arguments are known to be plain values and to imply at most
    :data:`MAX_PARAMETERS` parameters (counted on the meta device)."""
    odd = {
        key: value
        for key, value in model_kwargs.items()
        if not isinstance(key, str) or not isinstance(value, (bool, int, float, str))
    }
    if odd:
        raise ValueError(f"its model_kwargs must map names to numbers or strings, got {odd!r}")
    try:
        with torch.device("meta"):
            count = sum(p.numel() for p in entry.build(backend=backend, **model_kwargs).parameters())
    except (TypeError, ValueError) as error:  # an unknown constructor argument, or a value the model refuses
        raise ValueError(f"its model_kwargs {model_kwargs} do not fit: {error}") from error
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"its model_kwargs {model_kwargs} ask for a network of {count:,} parameters, more than the "
            f"{MAX_PARAMETERS:,} this package loads (the official networks have at most 13.8 M)"
        )
    return entry.build(backend=backend, **model_kwargs)


def load_denoiser(
    name: str,
    weights: str | os.PathLike | None = None,
    *,
    device: torch.device | str = "cpu",
    backend: str | None = None,
    allow_random: bool = False,
    optimized: bool = False,
    precision: str = "float32",
) -> nn.Module:
    """The registry's model ``name`` with ``weights``, on ``device``, in eval mode.

    Args:
        name: a key of :data:`DENOISERS`.
        weights: an official or trainer checkpoint (see the module's docstring): a file, or a TensorFlow
            checkpoint folder / prefix (AINDNet). ``"noisy"`` takes none.
        device: where the model is put.
        backend: backend of the fused ops inside the model; None follows the one in force.
        allow_random: build the model with its random initial weights when ``weights`` is None (tests and
            demos only: it does not denoise).
        optimized: return :func:`~cycleisp_fast.optimize`'s inference module instead (on the CPU in float32:
            Winograd convolutions and channels_last, ~1.5-2x faster, outputs within float rounding: PSNR
            against the model's > 100 dB), without ``torch.compile``, which would compile every tile shape anew.
        precision: ``optimize``'s precision with ``optimized=True``: ``"float32"`` (default), ``"bfloat16"``
            or ``"float16"`` (GPU only), at the accuracy the README states.

    Raises:
        FileNotFoundError: ``weights`` does not exist.
        ValueError: an unknown name, missing weights, an unreadable file, or weights for another model (the
            message names the file, the model and what does not fit); a precision that ``optimize`` refuses here.
    """
    entry = DENOISERS[check_choice(name, "name", tuple(DENOISERS))]
    backend = check_backend_argument(backend)
    if not isinstance(optimized, bool):
        raise TypeError(f"optimized must be True or False, got {optimized!r}")
    precision = check_choice(precision, "precision", PRECISIONS)
    if precision != "float32" and not optimized:
        raise ValueError(f"precision={precision!r} takes effect with optimized=True")
    if name == "noisy":
        if weights is not None:
            raise ValueError(f"the noisy baseline takes no weights, got {os.fspath(weights)}")
        return NoisyBaseline().eval()  # nothing to optimize
    if weights is None:
        if not allow_random:
            raise ValueError(
                f"model {name!r} needs weights: pass a checkpoint file (official or from "
                "cycleisp-fast train); random weights are for tests only (allow_random=True)"
            )
        model = entry.build(backend=backend)
    elif is_tf_checkpoint(weights):
        try:
            model = load_official(entry.build(backend=backend), weights)
        except (ValueError, ImportError) as error:
            raise ValueError(f"weights {os.fspath(weights)} do not fit model {name!r}: {error}") from error
    else:
        path = Path(weights)
        checkpoint = _read_checkpoint(path)
        try:
            if _is_trainer_checkpoint(checkpoint):
                if checkpoint["model"] != name:
                    raise ValueError(f"it was trained for model {checkpoint['model']!r}")
                model_kwargs = checkpoint.get("model_kwargs") or {}
                if not isinstance(model_kwargs, dict):
                    raise ValueError(f"its model_kwargs must be a dict, got {type(model_kwargs).__name__}")
                model = _build_bounded(entry, model_kwargs, backend)
                # a run with ema_decay saves its weight average beside the raw weights: the one to denoise with
                load_official(model, checkpoint.get("ema_state_dict") or checkpoint["state_dict"])
            else:
                model = load_official(entry.build(backend=backend), checkpoint)
        except (ValueError, TypeError) as error:
            raise ValueError(f"weights {path} do not fit model {name!r}: {error}") from error
    model = model.to(device).eval()
    return optimize(model, inference=True, precision=precision, compile=False) if optimized else model


def _model_device(model: nn.Module, fallback: torch.device) -> tuple[torch.device, torch.dtype]:
    """Where and in which dtype the model takes its inputs (an optimized model takes float32: it casts itself)."""
    parameter = next(model.parameters(), None)
    if parameter is None:
        return fallback, torch.float32
    return parameter.device, torch.float32 if isinstance(model, OptimizedModel) else parameter.dtype


def _domain(model: nn.Module) -> str:
    if isinstance(model, OptimizedModel):
        return _domain(model.module)
    if isinstance(model, NoisyBaseline):
        return "any"
    if isinstance(model, DenoiseNet):
        return "raw" if model.raw else "srgb"
    return getattr(model, "domain", "srgb")  # an exported network says its own


def denoise_srgb(
    model: nn.Module, noisy: Tensor, *, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP
) -> Tensor:
    """Denoises sRGB images with an sRGB model (or the noisy baseline), tile by tile.

    Args:
        model: an sRGB model (``cycleisp-srgb``, ``aindnet``) or the noisy baseline; a RAW model is refused.
        noisy: ``(N, 3, H, W)`` float in [0, 1], on any device (moved to the model's and back).
        tile: the tile size in pixels, see :func:`~cycleisp_fast.pipelines.tiling.tiled_apply`.
        overlap: the context kept around each tile, in pixels.

    Returns:
        ``(N, 3, H, W)`` float32 in [0, 1] (clamped), on ``noisy``'s device.
    """
    check_tensor(noisy, "noisy", shape_doc="(N, 3, H, W) sRGB in [0, 1]", channels=3)
    if _domain(model) == "raw":
        raise ValueError("denoise_srgb needs an sRGB model; this one denoises packed RAW (use denoise_raw)")
    device, dtype = _model_device(model, noisy.device)
    with torch.inference_mode():
        denoised = tiled_apply(model, noisy.to(device, dtype), tile=tile, overlap=overlap)
    return denoised.clamp(0, 1).to(noisy.device, torch.float32)


def denoise_raw(
    model: nn.Module, packed: Tensor, shot, read, *, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP
) -> Tensor:
    """Denoises packed RGGB RAW with a RAW model (or the noisy baseline), tile by tile.

    Args:
        model: a RAW model (``cycleisp-raw``), called as ``model(packed, variance)``, or the noisy baseline; an
            sRGB model is refused.
        packed: ``(N, 4, h, w)`` float in [0, 1].
        shot: the shot-noise variance (``variance = shot * packed + read``), a float or an ``(N,)`` tensor, >= 0.
        read: the read-noise variance, a float or an ``(N,)`` tensor, >= 0.
        tile: the tile size in packed pixels (half the sensor's), see
            :func:`~cycleisp_fast.pipelines.tiling.tiled_apply`.
        overlap: the context kept around each tile, in packed pixels.

    Returns:
        ``(N, 4, h, w)`` float32 in [0, 1] (clamped), on ``packed``'s device.
    """
    check_tensor(packed, "packed", shape_doc="(N, 4, h, w) packed RGGB in [0, 1]", channels=4)
    if _domain(model) == "srgb":
        raise ValueError("denoise_raw needs a RAW model (cycleisp-raw); this one denoises sRGB (use denoise_srgb)")
    device, dtype = _model_device(model, packed.device)
    n = packed.shape[0]
    levels = []
    for value, name in ((shot, "shot"), (read, "read")):
        level = torch.as_tensor(value, dtype=torch.float64).flatten()
        if level.numel() == 1:
            level = level.expand(n)
        if level.shape != (n,) or not bool(torch.all(torch.isfinite(level) & (level >= 0))):
            raise ValueError(f"{name} must be a variance >= 0, a float or one per image ({n}), got {value!r}")
        levels.append(level.to(device, dtype).view(n, 1, 1, 1))
    noisy = packed.to(device, dtype)
    variance = levels[0] * noisy + levels[1]

    def run(inputs: Tensor) -> Tensor:
        return model(inputs[:, :4], inputs[:, 4:])

    with torch.inference_mode():
        denoised = tiled_apply(run, torch.cat([noisy, variance], dim=1), tile=tile, overlap=overlap)
    return denoised.clamp(0, 1).to(packed.device, torch.float32)
