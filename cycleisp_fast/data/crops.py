"""Crops of images and patches, the one place that picks which pixels a crop keeps.

:func:`centre_crop` takes the centred window of an array or tensor (the benchmark-style crop of validation pairs,
``read_image(max_size=...)``, the sample photographs); :func:`random_crop` takes a window at even offsets chosen by
two uniform draws, so that callers keep their own seeded generators and the order of their draws (the training
patches of :class:`~cycleisp_fast.pipelines.synthesis.CleanPatches` and of the real pairs). Both return views
(slices, no copy) of ``(..., H, W)`` inputs: numpy arrays and torch tensors alike.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

Image = TypeVar("Image")  # a numpy array or a torch tensor: anything with .shape and [..., rows, columns] slicing


def centre_crop(image: Image, size: int | None, *, even_sides: bool = False, even_offsets: bool = False) -> Image:
    """The centred crop of ``image``, each side at most ``size`` pixels.

    Args:
        image: an array or tensor ``(..., H, W)``.
        size: the largest side of the crop; a side shorter than ``size`` is kept whole. None: no limit (with
            ``even_sides``, only an odd side loses a pixel).
        even_sides: round each side of the crop down to an even number of pixels (whole 2x2 Bayer blocks).
        even_offsets: start the crop at an even row and column (the centred offset rounded down to even), so that
            a mosaic's Bayer phase is kept.

    Returns:
        A view ``(..., h, w)`` of ``image`` with ``h = min(H, size)`` (rounded down to even with ``even_sides``),
        starting at row ``(H - h) // 2`` (``(H - h) // 4 * 2`` with ``even_offsets``); likewise for the columns.

    Shape:
        - image: ``(..., H, W)``
        - output: ``(..., h, w)``, ``h <= min(H, size)``, ``w <= min(W, size)``

    Example:
        >>> import torch
        >>> image = torch.arange(7 * 9).reshape(1, 7, 9)
        >>> centre_crop(image, 4).shape
        torch.Size([1, 4, 4])
        >>> centre_crop(image, 4)[0, 0, 0].item()  # starts at row (7 - 4) // 2 = 1, column (9 - 4) // 2 = 2
        11
        >>> centre_crop(image, 4, even_offsets=True)[0, 0, 0].item()  # row 0, column 2
        2
        >>> centre_crop(image, None, even_sides=True).shape  # odd sides lose one pixel
        torch.Size([1, 6, 8])
    """
    height, width = image.shape[-2:]
    crop_height, crop_width = (side if size is None else min(side, size) for side in (height, width))
    if even_sides:
        crop_height, crop_width = crop_height // 2 * 2, crop_width // 2 * 2
    if even_offsets:
        top, left = (height - crop_height) // 4 * 2, (width - crop_width) // 4 * 2
    else:
        top, left = (height - crop_height) // 2, (width - crop_width) // 2
    return image[..., top : top + crop_height, left : left + crop_width]


def random_crop(image: Image, size: int, uniforms: Sequence[float]) -> Image:
    """The ``size x size`` crop of ``image`` at an even row and column picked by two uniform draws.

    The caller draws the numbers (e.g. ``torch.rand(..., generator=keyed_generator(seed, i, stream),
    dtype=torch.float64)``), so that a dataset item stays a function of its key and the order of its draws is the
    caller's. Every even offset at which the crop fits is equally likely: the row is
    ``2 * floor(uniforms[0] * ((H - size) // 2 + 1))``, the column likewise with ``uniforms[1]`` and ``W``.

    Args:
        image: an array or tensor ``(..., H, W)`` with ``H, W >= size`` (the caller checks, naming its image).
        size: the crop's side.
        uniforms: two numbers in ``[0, 1)``: the row's draw, then the column's.

    Shape:
        - image: ``(..., H, W)``
        - output: ``(..., size, size)``

    Example:
        >>> import torch
        >>> image = torch.arange(6 * 8).reshape(1, 6, 8)
        >>> patch = random_crop(image, 2, (0.5, 0.99))  # rows: offsets 0, 2, 4; columns: 0, 2, 4, 6
        >>> patch.shape, patch[0, 0, 0].item()  # row 2, column 6
        (torch.Size([1, 2, 2]), 22)
    """
    top, left = crop_offsets(*image.shape[-2:], size, uniforms)
    return image[..., top : top + size, left : left + size]


def crop_offsets(height: int, width: int, size: int, uniforms: Sequence[float] | None = None) -> tuple[int, int]:
    """``(top, left)``, both even, of a ``size x size`` crop of an ``H x W`` image: picked by two uniform draws as
    :func:`random_crop` picks them, or centred and rounded down to even (as :func:`centre_crop` with
    ``even_offsets``) when ``uniforms`` is None. For callers that crop several aligned images of different scales.

    Example:
        >>> crop_offsets(6, 8, 2, (0.5, 0.99)), crop_offsets(6, 8, 2)
        ((2, 6), (2, 2))
    """
    if uniforms is None:
        return (height - size) // 4 * 2, (width - size) // 4 * 2
    return 2 * int(uniforms[0] * ((height - size) // 2 + 1)), 2 * int(uniforms[1] * ((width - size) // 2 + 1))
