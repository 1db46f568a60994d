"""The analytic camera pipeline of Brooks et al., "Unprocessing Images for Learned Raw Denoising" (CVPR 2019),
batched in PyTorch: :func:`unprocess` turns sRGB into packed RGGB RAW with sampled camera parameters, and
:func:`process` develops packed RAW back to sRGB.

``unprocess`` (per image, with :class:`CameraParams` from :func:`random_camera_params`):
inverse tone curve ``0.5 - sin(asin(1 - 2x) / 3)`` (the inverse of smoothstep ``3x^2 - 2x^3``), inverse gamma
``max(x, 1e-8) ** 2.2``, sRGB -> camera colour matrix, inverse white balance and brightness gains with Brooks'
highlight-preserving mask, clip to [0, 1], mosaic to packed RGGB planes (R, Gr, Gb, B).

``process``: white-balance (and optionally brightness) gains, clip, bilinear demosaic, camera -> sRGB matrix, clip,
gamma ``max(x, 1e-8) ** (1 / 2.2)``, and (``tone_map=True``) smoothstep. Brooks' ``process.py`` applies neither
the brightness gain nor the tone curve; with ``rgb_gain`` and ``tone_map=True`` (what the synthesis pipelines use)
``process`` inverts every step of ``unprocess`` except the mosaic, so ``process(unprocess(x))`` is ``x`` up to the
bilinear demosaic and the highlights that the safe gains compress.

Camera parameters (:func:`random_camera_params`, Brooks' ``random_ccm`` and ``random_gains``): the sRGB -> camera
matrix is a random convex combination of four cameras' XYZ -> camera matrices times the sRGB (D65) -> XYZ matrix,
rows normalised to sum to 1; ``rgb_gain = 1 / N(0.8, 0.1)``, ``red_gain ~ U(1.9, 2.4)``, ``blue_gain ~ U(1.5, 1.9)``.
Draws are made on the CPU in float64 (bit-identical whatever the device), like the noise levels.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

from cycleisp_fast import ops
from cycleisp_fast.checks import check_count, check_dtype, check_generator, check_tensor
from cycleisp_fast.color import normalised_rgb_to_camera

XYZ_TO_CAMERA = torch.tensor(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.6130, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.8380, -0.2630, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.0970, 0.1581, 0.5181]],
    ],
    dtype=torch.float64,
)
"""``(4, 3, 3)``: the XYZ -> camera matrices of the four cameras that Brooks et al. mix (DNG ColorMatrix data)."""


class CameraParams(NamedTuple):
    """Per-image camera parameters: ``rgb2cam``/``cam2rgb`` ``(N, 3, 3)`` (inverse of each other), and the gains
    ``rgb_gain``, ``red_gain``, ``blue_gain`` ``(N,)``."""

    rgb2cam: Tensor
    cam2rgb: Tensor
    rgb_gain: Tensor
    red_gain: Tensor
    blue_gain: Tensor

    def to(self, *args, **kwargs) -> "CameraParams":
        """Every tensor through ``Tensor.to(*args, **kwargs)``."""
        return CameraParams(*(t.to(*args, **kwargs) for t in self))


def random_camera_params(
    n: int, *, generator: Optional[torch.Generator] = None, device=None, dtype: torch.dtype = torch.float32
) -> CameraParams:
    """Brooks et al.'s random camera for ``n`` images. Draws, in this order from ``generator`` (CPU; torch's default
    generator when None): ``(n, 4)`` uniform mixing weights, ``n`` normals (brightness), ``n`` uniforms (red gain),
    ``n`` uniforms (blue gain); computed in float64, cast to ``dtype``, moved to ``device``."""
    n = check_count(n, "n", "the number of images")
    generator = check_generator(generator)
    dtype = check_dtype(dtype)
    weights = torch.rand(n, 4, generator=generator, dtype=torch.float64)
    weights = weights / weights.sum(dim=1, keepdim=True)
    rgb2cam = normalised_rgb_to_camera(torch.einsum("nk,kij->nij", weights, XYZ_TO_CAMERA))
    cam2rgb = torch.linalg.inv(rgb2cam)
    rgb_gain = 1.0 / (0.8 + 0.1 * torch.randn(n, generator=generator, dtype=torch.float64))
    red_gain = 1.9 + 0.5 * torch.rand(n, generator=generator, dtype=torch.float64)
    blue_gain = 1.5 + 0.4 * torch.rand(n, generator=generator, dtype=torch.float64)
    return CameraParams(rgb2cam, cam2rgb, rgb_gain, red_gain, blue_gain).to(dtype=dtype).to(device)


def _per_image(value, name: str, n: int, like: Tensor, shape: tuple[int, ...] = ()) -> Tensor:
    """``value`` as an ``(n, *shape)`` tensor of ``like``'s dtype and device (a scalar or a single matrix is
    broadcast to every image)."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.shape == shape:
        t = t.expand(n, *shape)
    if t.shape != (n, *shape):
        raise ValueError(
            f"{name} must have shape {shape or '()'} or {(n, *shape)} for a batch of {n} images, got {tuple(t.shape)}"
        )
    return t


def _check_params(params: CameraParams, n: int, like: Tensor) -> CameraParams:
    if not isinstance(params, CameraParams):
        raise TypeError(f"params must be a CameraParams (see random_camera_params), got {type(params).__name__}")
    return CameraParams(
        _per_image(params.rgb2cam, "params.rgb2cam", n, like, (3, 3)),
        _per_image(params.cam2rgb, "params.cam2rgb", n, like, (3, 3)),
        *(_per_image(getattr(params, f), f"params.{f}", n, like) for f in CameraParams._fields[2:]),
    )


def inverse_smoothstep(x: Tensor) -> Tensor:
    """The inverse of smoothstep ``3y^2 - 2y^3`` on [0, 1]: ``0.5 - sin(asin(1 - 2x) / 3)`` (x clipped to [0, 1])."""
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * x.clamp(0.0, 1.0)) / 3.0)


def smoothstep(x: Tensor) -> Tensor:
    """``3x^2 - 2x^3`` (x clipped to [0, 1]): the tone curve that :func:`inverse_smoothstep` undoes."""
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def unprocess(srgb: Tensor, params: CameraParams, *, backend: str | None = None) -> Tensor:
    """SRGB ``(N, 3, H, W)`` in [0, 1] (H, W even) -> packed RGGB RAW ``(N, 4, H/2, W/2)`` in [0, 1] with the
    per-image ``params`` (:func:`random_camera_params`): inverse tone curve, inverse gamma, then the fused
    :func:`cycleisp_fast.ops.camera_mosaic` (sRGB -> camera, inverse gains safe for highlights, clip, mosaic) on
    ``backend``. Differentiable."""
    check_tensor(srgb, "srgb", shape_doc="(N, 3, H, W) sRGB in [0, 1], H and W even", channels=3, even=True)
    n = srgb.shape[0]
    params = _check_params(params, n, srgb)
    linear = torch.clamp_min(inverse_smoothstep(srgb), 1e-8) ** 2.2
    ones = torch.ones_like(params.red_gain)
    inverse_gains = torch.stack([1.0 / params.red_gain, ones, 1.0 / params.blue_gain], dim=1) / params.rgb_gain[:, None]
    return ops.camera_mosaic(linear, params.rgb2cam, inverse_gains, backend=backend)


def process(
    raw: Tensor, red_gain, blue_gain, cam2rgb, *, rgb_gain=1.0, tone_map: bool = False, backend: str | None = None
) -> Tensor:
    """Packed RGGB RAW ``(N, 4, h, w)`` -> sRGB ``(N, 3, 2h, 2w)`` in [0, 1]: the fused
    :func:`cycleisp_fast.ops.camera_demosaic` on ``backend`` (gains ``(red, 1, 1, blue) * rgb_gain``, clip, bilinear
    demosaic, ``cam2rgb`` ``(N, 3, 3)`` or one ``(3, 3)`` for all, clip), then gamma 1/2.2 and, when ``tone_map``,
    the smoothstep tone curve. ``red_gain``, ``blue_gain``, ``rgb_gain``: floats or ``(N,)``. The defaults are
    Brooks' ``process``; ``rgb_gain=params.rgb_gain, tone_map=True`` inverts :func:`unprocess`. Differentiable."""
    check_tensor(raw, "raw", shape_doc="(N, 4, h, w) packed RGGB", channels=4)
    n = raw.shape[0]
    ones = torch.ones(n, dtype=raw.dtype, device=raw.device)
    red, blue = _per_image(red_gain, "red_gain", n, raw), _per_image(blue_gain, "blue_gain", n, raw)
    gains = torch.stack([red, ones, ones, blue], dim=1) * _per_image(rgb_gain, "rgb_gain", n, raw)[:, None]
    linear = ops.camera_demosaic(raw, gains, _per_image(cam2rgb, "cam2rgb", n, raw, (3, 3)), backend=backend)
    srgb = torch.clamp_min(linear, 1e-8) ** (1.0 / 2.2)
    return smoothstep(srgb) if tone_map else srgb
