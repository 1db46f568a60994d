"""Denoising the DND and SIDD benchmarks into the files their servers take (:mod:`cycleisp_fast.data.submissions`).

- :func:`denoise_dnd`: every bounding box of a :class:`~cycleisp_fast.data.datasets.DND` folder into
  ``<image>_<box>.mat``, then each image's ``bundled/<image>.mat``; resumable (boxes already written are skipped).
- :func:`denoise_sidd_blocks`: every block of a :class:`~cycleisp_fast.data.sidd_blocks.SIDDBlocks` file, timed,
  into the array ``SubmitSrgb.mat`` / ``SubmitRaw.mat`` hold.
- :func:`denoise_item`: one benchmark item (a DND box with its context, or a SIDD block), either domain; a RAW
  mosaic keeps its exact size: it is flipped to RGGB as DND's official RAW script does (:func:`denoise_mosaic`).

Example::

    model = load_denoiser("cycleisp-srgb", "sidd_rgb.pth")
    denoise_dnd(DND("dnd_2017", "srgb", margin=80), model, Path("out"))  # out/0001_01.mat ... out/bundled/
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from cycleisp_fast.data.datasets import DND
from cycleisp_fast.data.images import quantize
from cycleisp_fast.data.raw import rggb_flip_axes
from cycleisp_fast.data.sidd_blocks import SIDDBlocks
from cycleisp_fast.data.submissions import (
    SIDD_MEGAPIXEL,
    dnd_crop_shape,
    is_complete_dnd_crop,
    read_dnd_crop,
    write_dnd_bundle,
    write_dnd_crop,
)
from cycleisp_fast.ops import bayer_pack, bayer_unpack
from cycleisp_fast.pipelines.denoisers import DEFAULT_OVERLAP, DEFAULT_TILE, denoise_raw, denoise_srgb


def denoise_mosaic(
    model: nn.Module,
    mosaic: Tensor,
    pattern: str,
    shot: float,
    read: float,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
) -> Tensor:
    """Denoises one Bayer mosaic of any pattern and size with a RAW model, keeping its exact size.

    The mosaic is flipped to RGGB (:func:`~cycleisp_fast.data.raw.rggb_flip_axes`, the unification of DND's official
    RAW script; an odd height or width is first padded by one reflected row or column, which keeps the colours
    in place), packed, denoised (:func:`~cycleisp_fast.pipelines.denoisers.denoise_raw`, clamped to [0, 1]),
    unpacked and flipped back.

    Args:
        model: a RAW model (``cycleisp-raw``) or the noisy baseline, as :func:`denoise_raw` takes it.
        mosaic: ``(1, H, W)`` float in [0, 1] (clamped first), ``H, W >= 2``.
        pattern: its Bayer pattern, ``"RGGB" | "BGGR" | "GRBG" | "GBRG"``.
        shot: the shot-noise variance, ``variance = shot * x + read``.
        read: the read-noise variance.
        tile: the tile size, in packed pixels (half the mosaic's), see
            :func:`~cycleisp_fast.pipelines.tiling.tiled_apply`.
        overlap: the context kept around each tile, in packed pixels.

    Returns:
        ``(1, H, W)`` float32 in [0, 1], on ``mosaic``'s device.
    """
    if not isinstance(mosaic, Tensor) or mosaic.dim() != 3 or mosaic.shape[0] != 1 or min(mosaic.shape[1:]) < 2:
        got = tuple(mosaic.shape) if isinstance(mosaic, Tensor) else type(mosaic).__name__
        raise ValueError(f"mosaic must be a (1, H, W) tensor with H, W >= 2, got {got}")
    axes = rggb_flip_axes(pattern)
    height, width = mosaic.shape[1:]
    even = F.pad(mosaic[None].clamp(0, 1), (0, width % 2, 0, height % 2), mode="reflect")
    packed = bayer_pack(torch.flip(even, axes).contiguous(), "RGGB")
    denoised = denoise_raw(model, packed, shot, read, tile=tile, overlap=overlap)
    return torch.flip(bayer_unpack(denoised, "RGGB"), axes)[0, :, :height, :width]


def denoise_item(model: nn.Module, item: dict, *, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP) -> Tensor:
    """Denoises a benchmark item's ``noisy``: ``(3, h, w)`` sRGB with an sRGB model, or a ``(1, h, w)`` mosaic
    (with its ``pattern``, ``shot``, ``read``) with :func:`denoise_mosaic`. Returns float32 of ``noisy``'s shape in
    [0, 1]."""
    noisy = item["noisy"]
    if "pattern" in item:
        return denoise_mosaic(model, noisy, item["pattern"], item["shot"], item["read"], tile=tile, overlap=overlap)
    return denoise_srgb(model, noisy[None], tile=tile, overlap=overlap)[0]


@dataclass(frozen=True)
class DndRun:
    """What :func:`denoise_dnd` did: boxes denoised now, boxes found already written, bundles written now."""

    denoised: int
    skipped: int
    bundles: int


def denoise_dnd(
    dataset: DND, model: nn.Module, outdir: Path, *, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP
) -> DndRun:
    """Denoises every box of a DND benchmark into ``outdir/<image>_<box>.mat`` and ``outdir/bundled/<image>.mat``.

    Each box is denoised with the context ``dataset`` keeps around it (its ``margin``), then cropped to the box;
    a box whose file already holds a crop of the right shape is skipped. An image's bundle is written (again)
    once all its boxes have files, when one of them was written in this run or the bundle is missing. All files
    are atomic, so an interrupted run resumes where it stopped.
    """
    israw = dataset.kind == "raw"
    by_image: dict[int, list[int]] = {}
    for index, (image_number, _) in enumerate(dataset.items):
        by_image.setdefault(image_number, []).append(index)
    denoised = skipped = bundles = 0
    with tqdm(total=len(dataset), desc=f"dnd-{dataset.kind}", unit="box", file=sys.stderr) as progress:
        for image_number, indices in by_image.items():
            paths = [outdir / f"{dataset.item_name(index)}.mat" for index in indices]
            written = False
            for index, path in zip(indices, paths):
                if is_complete_dnd_crop(path, dnd_crop_shape(dataset.box_shape(index), israw)):
                    skipped += 1
                else:
                    item = dataset[index]
                    top, left, height, width = item["box"].tolist()
                    output = denoise_item(model, item, tile=tile, overlap=overlap)[
                        :, top : top + height, left : left + width
                    ]
                    write_dnd_crop(path, output[0].numpy() if israw else output.permute(1, 2, 0).numpy())
                    denoised, written = denoised + 1, True
                progress.update()
            bundle = outdir / "bundled" / f"{image_number + 1:04d}.mat"
            if written or not bundle.is_file():
                write_dnd_bundle(bundle, [read_dnd_crop(path) for path in paths], israw=israw)
                bundles += 1
    return DndRun(denoised, skipped, bundles)


def denoise_sidd_blocks(
    blocks: SIDDBlocks, model: nn.Module, *, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP
) -> tuple[np.ndarray, float]:
    """Denoises every block of a SIDD blocks file.

    Returns:
        ``(denoised, seconds_per_megapixel)``: the blocks in the noisy array's shape and dtype (sRGB: rounded to
        uint8; RAW: clamped to [0, 1]), and SIDD's ``TimeMP``: the seconds spent in the denoiser (input to output
        tensor; reading, noise estimation and rounding excluded, as SIDD's ``DenoiseSrgb.m`` times only its
        ``Denoiser`` call) times 1024 * 1024 over the number of pixels.
    """
    denoised = np.empty_like(blocks.noisy)
    seconds = 0.0
    for index in tqdm(range(len(blocks)), desc=f"sidd-{blocks.kind}", unit="block", file=sys.stderr):
        item = blocks[index]
        start = time.perf_counter()
        output = denoise_item(model, item, tile=tile, overlap=overlap)
        seconds += time.perf_counter() - start
        denoised[item["image"], item["block"]] = (
            quantize(output, 8) if blocks.kind == "srgb" else output[0].numpy().astype(denoised.dtype)
        )
    height, width = blocks.noisy.shape[2:4]
    return denoised, seconds * SIDD_MEGAPIXEL / (len(blocks) * height * width)
