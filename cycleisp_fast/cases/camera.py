"""Benchmark, selftest and test cases of the camera ops (:mod:`cycleisp_fast.ops.camera`) and of the whole Unprocessing
pair synthesis (:class:`cycleisp_fast.pipelines.synthesis.UnprocessingSynthesizer`).

``synthesis_unprocessing`` (opt-in: ``--ops synthesis_unprocessing``) times one batch of pairs from clean sRGB
``(N, 3, H, W)`` (default 8 x 3 x 512 x 512): random cameras, unprocess, RAW noise (Brooks' levels, seeded), and
the clean and noisy RAW developed; the output is the noisy sRGB batch. ``eager`` and ``compile`` run the same
pipeline on the reference backend, the fused rows with the camera and noise ops fused. Pairs/s = N / time.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cycleisp_fast import ops
from cycleisp_fast.cases import Case, Size, Variant
from cycleisp_fast.pipelines.synthesis import UnprocessingSynthesizer
from cycleisp_fast.pipelines.unprocessing import random_camera_params

_EXACT_UP_TO_ROUNDING = (Variant({}, exact=False),)


def _mosaic_inputs(size: Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator):
    """Linear sRGB of ``size`` slightly over 1 in places (highlights), and a random camera per image."""
    linear = 1.05 * torch.rand(size, dtype=dtype, device=device, generator=generator)
    camera = random_camera_params(size[0], generator=_cpu_generator(generator), device=device, dtype=dtype)
    gains = torch.stack([1 / camera.red_gain, torch.ones_like(camera.red_gain), 1 / camera.blue_gain], 1)
    return linear, camera.rgb2cam, gains / camera.rgb_gain[:, None]


def _demosaic_inputs(size: Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator):
    """Packed RAW of ``size`` and a random camera's gains (R, 1, 1, B) x brightness and matrix per image."""
    packed = torch.rand(size, dtype=dtype, device=device, generator=generator)
    camera = random_camera_params(size[0], generator=_cpu_generator(generator), device=device, dtype=dtype)
    ones = torch.ones_like(camera.red_gain)
    gains = torch.stack([camera.red_gain, ones, ones, camera.blue_gain], 1) * camera.rgb_gain[:, None]
    return packed, gains, camera.cam2rgb


def _cpu_generator(generator: torch.Generator) -> torch.Generator:
    """A CPU generator seeded from ``generator`` (camera parameters are drawn on the CPU)."""
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator().manual_seed(seed)


def _clean_images(size: Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator):
    return (torch.rand(size, dtype=dtype, device=device, generator=generator),)


_SYNTHESIZERS: dict[str, UnprocessingSynthesizer] = {}


def synthesize_noisy(clean: Tensor, *, backend: str | None = None) -> Tensor:
    """The noisy sRGB of a batch of Unprocessing pairs (seed 0) on ``backend``."""
    key = backend or "auto"
    if key not in _SYNTHESIZERS:
        _SYNTHESIZERS[key] = UnprocessingSynthesizer(backend=backend)
    return _SYNTHESIZERS[key](clean, seed=0).noisy


def _synthesize_on_reference(clean: Tensor) -> Tensor:
    return synthesize_noisy(clean, backend="reference")


def _fits(channels: int, even: bool):
    def fits(size: Size) -> bool:
        return len(size) == 4 and size[1] == channels and (not even or (size[2] % 2 == 0 and size[3] % 2 == 0))

    return fits


def _reference_of(name: str):
    def on_reference(*inputs: Tensor) -> Tensor:
        return getattr(ops, name)(*inputs, backend="reference")

    return on_reference


CASES = (
    Case(
        name="camera_mosaic",
        kernel="camera_mosaic",
        op=ops.camera_mosaic,
        reference=_reference_of("camera_mosaic"),
        make_inputs=_mosaic_inputs,
        size_doc="N x 3 x H x W (linear sRGB), H and W even",
        fits=_fits(3, True),
        default_sizes=((8, 3, 512, 512),),
        quick_sizes=((2, 3, 32, 32),),
        selftest_sizes=((2, 3, 6, 10), (1, 3, 2, 2)),
        test_sizes=((1, 3, 2, 2), (2, 3, 6, 10), (3, 3, 12, 4)),
        variants=_EXACT_UP_TO_ROUNDING,
    ),
    Case(
        name="camera_demosaic",
        kernel="camera_demosaic",
        op=ops.camera_demosaic,
        reference=_reference_of("camera_demosaic"),
        make_inputs=_demosaic_inputs,
        size_doc="N x 4 x h x w (packed RGGB)",
        fits=_fits(4, False),
        default_sizes=((8, 4, 256, 256),),
        quick_sizes=((2, 4, 16, 16),),
        selftest_sizes=((2, 4, 3, 5), (1, 4, 1, 1)),
        test_sizes=((1, 4, 1, 1), (2, 4, 3, 5), (2, 4, 8, 6), (1, 4, 3, 130)),
        variants=_EXACT_UP_TO_ROUNDING,
    ),
    Case(
        name="synthesis_unprocessing",
        kernel="camera_demosaic",
        op=synthesize_noisy,
        reference=_synthesize_on_reference,
        make_inputs=_clean_images,
        size_doc="N x 3 x H x W (clean sRGB), H and W even",
        fits=_fits(3, True),
        default_sizes=((8, 3, 512, 512),),
        quick_sizes=((2, 3, 32, 32),),
        selftest_sizes=((2, 3, 8, 12),),
        variants=_EXACT_UP_TO_ROUNDING,
        opt_in=True,
    ),
)
