"""The camera ops of the analytic ISP (Brooks et al.'s unprocess/process), fused: every step between the
per-pixel tone and gamma curves.

* ``camera_mosaic(linear, rgb2cam, gains)``: linear sRGB ``(N, 3, H, W)`` -> colour matrix -> highlight-safe
  inverse gains -> clip -> packed RGGB ``(N, 4, H/2, W/2)`` in one pass (the reference makes ~15).
* ``camera_demosaic(packed, gains, cam2rgb)``: packed RGGB -> gains -> clip -> bilinear demosaic -> colour matrix
  -> clip -> linear sRGB ``(N, 3, 2h, 2w)`` in one pass (the reference's depthwise convolution dominates its time).

Registered operators ``cycleisp_fast::camera_mosaic`` / ``camera_demosaic`` with C++ (CPU) and CUDA kernels over
one shared per-site header (``csrc/ops/camera_math.h``), and their Triton twins ``camera_mosaic_triton`` /
``camera_demosaic_triton``. Their backward is the reference's (autograd through :mod:`cycleisp_fast.reference.camera`,
recomputed from the saved inputs), not a fused kernel: pair synthesis runs them without gradients.
"""

from __future__ import annotations

import torch

from cycleisp_fast.checks import check_tensor
from cycleisp_fast.ops.registration import FusedOp, reference_autograd
from cycleisp_fast.reference import camera as reference


def _fake_mosaic(linear, rgb2cam, gains):
    n, _, height, width = linear.shape
    return linear.new_empty((n, 4, height // 2, width // 2))


def _fake_demosaic(packed, gains, cam2rgb):
    n, _, h, w = packed.shape
    return packed.new_empty((n, 3, 2 * h, 2 * w))


@torch.library.custom_op("cycleisp_fast::camera_mosaic_triton", mutates_args=())
def _camera_mosaic_triton(linear: torch.Tensor, rgb2cam: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    from cycleisp_fast.triton_kernels import camera as kernels

    return kernels.camera_mosaic(linear.contiguous(), rgb2cam.contiguous(), gains.contiguous())


@torch.library.custom_op("cycleisp_fast::camera_demosaic_triton", mutates_args=())
def _camera_demosaic_triton(packed: torch.Tensor, gains: torch.Tensor, cam2rgb: torch.Tensor) -> torch.Tensor:
    from cycleisp_fast.triton_kernels import camera as kernels

    return kernels.camera_demosaic(packed.contiguous(), gains.contiguous(), cam2rgb.contiguous())


CAMERA_MOSAIC = FusedOp("camera_mosaic", fake=_fake_mosaic, **reference_autograd(reference.camera_mosaic))
CAMERA_DEMOSAIC = FusedOp("camera_demosaic", fake=_fake_demosaic, **reference_autograd(reference.camera_demosaic))
OP_NAMES = (CAMERA_MOSAIC.name, CAMERA_DEMOSAIC.name)


def _params(value, name: str, like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of shape {(like.shape[0], *shape)}, got {type(value).__name__}")
    if tuple(value.shape) != (like.shape[0], *shape):
        raise ValueError(
            f"{name} must have shape {(like.shape[0], *shape)} for a batch of {like.shape[0]}, got {tuple(value.shape)}"
        )
    return value.to(device=like.device, dtype=like.dtype)


def _run(op: FusedOp, args: tuple, backend: str | None, reference_fn) -> torch.Tensor:
    impl = op.resolve(args[0].device.type, backend)
    if impl == "reference":
        return reference_fn(*args)
    return op.kernel(impl)(*args)


def camera_mosaic(
    linear: torch.Tensor, rgb2cam: torch.Tensor, gains: torch.Tensor, *, backend: str | None = None
) -> torch.Tensor:
    """Linear sRGB ``(N, 3, H, W)`` (H, W even) -> packed RGGB camera RAW ``(N, 4, H/2, W/2)`` in [0, 1].

    Args:
        linear: floating, linear (gamma-expanded) sRGB.
        rgb2cam: ``(N, 3, 3)`` sRGB -> camera matrices.
        gains: ``(N, 3)`` inverse gains (R, G, B) (Brooks: ``(1 / red, 1, 1 / blue) / rgb_gain``), faded to 1 above
            grey 0.9 so that highlights stay saturated.
        backend: overrides the backend in force (see :mod:`cycleisp_fast.backend`).

    Returns:
        ``(N, 4, H/2, W/2)`` planes R, Gr, Gb, B of linear's dtype, clipped to [0, 1].

    Shape:
        - linear: ``(N, 3, H, W)``, H and W even; rgb2cam: ``(N, 3, 3)``; gains: ``(N, 3)``
        - output: ``(N, 4, H/2, W/2)``

    Example:
        >>> linear = torch.full((1, 3, 4, 4), 0.5)
        >>> identity, unit_gains = torch.eye(3)[None], torch.ones(1, 3)
        >>> camera_mosaic(linear, identity, unit_gains).unique()
        tensor([0.5000])
    """
    check_tensor(linear, "linear", shape_doc="(N, 3, H, W), H and W even", channels=3, even=True)
    args = (linear, _params(rgb2cam, "rgb2cam", linear, (3, 3)), _params(gains, "gains", linear, (3,)))
    return _run(CAMERA_MOSAIC, args, backend, reference.camera_mosaic)


def camera_demosaic(
    packed: torch.Tensor, gains: torch.Tensor, cam2rgb: torch.Tensor, *, backend: str | None = None
) -> torch.Tensor:
    """Packed RGGB ``(N, 4, h, w)`` -> linear sRGB ``(N, 3, 2h, 2w)`` in [0, 1].

    Args:
        packed: floating planes R, Gr, Gb, B.
        gains: ``(N, 4)`` per plane (Brooks: ``(red, 1, 1, blue)``, times a brightness gain), applied then clipped.
        cam2rgb: ``(N, 3, 3)`` camera -> sRGB matrices, applied after the bilinear demosaic, then clipped.
        backend: overrides the backend in force (see :mod:`cycleisp_fast.backend`).

    Returns:
        ``(N, 3, 2h, 2w)`` linear sRGB of packed's dtype, clipped to [0, 1].

    Shape:
        - packed: ``(N, 4, h, w)``; gains: ``(N, 4)``; cam2rgb: ``(N, 3, 3)``
        - output: ``(N, 3, 2h, 2w)``

    Example:
        >>> packed = torch.full((1, 4, 3, 3), 0.25)
        >>> rgb = camera_demosaic(packed, torch.ones(1, 4), torch.eye(3)[None])
        >>> rgb.shape, rgb.unique()
        (torch.Size([1, 3, 6, 6]), tensor([0.2500]))
    """
    check_tensor(packed, "packed", shape_doc="(N, 4, h, w) packed RGGB", channels=4)
    args = (packed, _params(gains, "gains", packed, (4,)), _params(cam2rgb, "cam2rgb", packed, (3, 3)))
    return _run(CAMERA_DEMOSAIC, args, backend, reference.camera_demosaic)
