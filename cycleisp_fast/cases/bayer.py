"""Benchmark, selftest and test cases of the Bayer ops (:mod:`cycleisp_fast.ops.bayer`).

Sizes are the input's shape: rgb ``(N, 3, H, W)``, cfa ``(N, 1, H, W)``, packed ``(N, 4, H/2, W/2)``.
The default is N=4 images of 1024x1024.
"""

from __future__ import annotations

import torch

from cycleisp_fast import ops
from cycleisp_fast.cases import Case, Size, Variant, io_bytes
from cycleisp_fast.ops.bayer import LAYOUT_CHANNELS, OP_NAME, PATTERNS
from cycleisp_fast.reference import bayer as reference

DEFAULT_IMAGES = ((4, 1024, 1024),)
QUICK_IMAGES = ((1, 64, 64),)
SELFTEST_IMAGES = ((2, 6, 10), (1, 2, 2), (1, 4, 1030))
TEST_IMAGES = ((2, 6, 10),)
"""Full-resolution (N, H, W) of the images behind each size; 1030 columns span several GPU blocks. The op tests
check the test images in every dtype, the selftest images in float32."""

FLOAT_LEVELS = {"black_level": (0.05, 0.06, 0.07, 0.08), "white_level": (0.9, 0.95, 0.97, 1.0)}
RAW_LEVELS = {"black_level": (64.0, 60.0, 62.0, 66.0), "white_level": (1023.0, 1020.0, 1021.0, 1022.0)}
RAW_MAX = 1023
"""10-bit RAW samples, black and white levels per packed channel (R, Gr, Gb, B)."""

SIZE_DOCS = {
    "rgb": "N x 3 x H x W (rgb), H and W even",
    "cfa": "N x 1 x H x W (cfa), H and W even",
    "packed": "N x 4 x h x w (packed planes)",
}


def _shape(layout: str, batch: int, height: int, width: int) -> Size:
    """The input shape in ``layout`` of ``batch`` full-resolution ``height x width`` images."""
    if layout == "packed":
        return (batch, 4, height // 2, width // 2)
    return (batch, LAYOUT_CHANNELS[layout], height, width)


def _fits(layout: str):
    """Whether a size is a 4-D shape of ``layout``, whole 2x2 blocks for full-resolution layouts."""

    def fits(size: Size) -> bool:
        if len(size) != 4 or size[1] != LAYOUT_CHANNELS[layout]:
            return False
        return layout == "packed" or (size[2] % 2 == 0 and size[3] % 2 == 0)

    return fits


def _random_image(size: Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator):
    """One ``size`` image, uniform in [0, 1)."""
    return (torch.rand(size, dtype=dtype, device=device, generator=generator),)


def _random_raw(size: Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator):
    """One ``size`` image of RAW samples, uniform integers in [0, RAW_MAX], of the integer ``dtype``."""
    samples = torch.randint(0, RAW_MAX + 1, size, dtype=torch.int32, device=device, generator=generator)
    return (samples.to(dtype),)


def rgb_sampling_bytes(inputs, output, mode: str) -> int:
    """Minimum bytes of an op that samples an RGB image through the CFA: it must read one colour per site
    (a third of the input); its backward writes the whole RGB gradient, zeros included."""
    (rgb,) = inputs
    unread = rgb.nelement() * rgb.element_size() * 2 // 3
    return io_bytes(inputs, output, mode) - unread


def _variants(levels: dict | None = None) -> tuple[Variant, ...]:
    """Every CFA pattern, plain or with black/white levels: bit-exact either way (every backend computes
    (x - black) / (white - black) in the same precision with IEEE division and rounds once)."""
    return tuple(Variant({"pattern": pattern, **(levels or {})}) for pattern in PATTERNS)


def _case(
    name,
    op,
    ref,
    layout: str,
    variants: tuple[Variant, ...],
    dtype: torch.dtype | None = None,
    make_inputs=_random_image,
) -> Case:
    """A Bayer case whose input is in ``layout``."""
    return Case(
        name=name,
        kernel=OP_NAME,
        op=op,
        reference=ref,
        make_inputs=make_inputs,
        size_doc=SIZE_DOCS[layout],
        fits=_fits(layout),
        default_sizes=tuple(_shape(layout, *image) for image in DEFAULT_IMAGES),
        quick_sizes=tuple(_shape(layout, *image) for image in QUICK_IMAGES),
        selftest_sizes=tuple(_shape(layout, *image) for image in SELFTEST_IMAGES),
        test_sizes=tuple(_shape(layout, *image) for image in TEST_IMAGES),
        variants=variants,
        dtype=dtype,
        min_bytes=rgb_sampling_bytes if layout == "rgb" else io_bytes,
    )


CASES = (
    _case("bayer_mosaic", ops.bayer_mosaic, reference.bayer_mosaic, "rgb", _variants()),
    _case("bayer_pack", ops.bayer_pack, reference.bayer_pack, "cfa", _variants() + _variants(FLOAT_LEVELS)),
    _case(
        "bayer_pack_u16_levels",
        ops.bayer_pack,
        reference.bayer_pack,
        "cfa",
        _variants(RAW_LEVELS),
        dtype=torch.uint16,
        make_inputs=_random_raw,
    ),
    _case("bayer_unpack", ops.bayer_unpack, reference.bayer_unpack, "packed", _variants()),
    _case("rgb_to_packed_bayer", ops.rgb_to_packed_bayer, reference.rgb_to_packed_bayer, "rgb", _variants()),
)
