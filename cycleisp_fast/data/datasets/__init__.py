"""Datasets of real noisy images (torch ``Dataset``s) for evaluation and transfer training.

Layouts (``open_pairs`` detects them: :mod:`~cycleisp_fast.data.datasets.layouts`), one module per dataset
(what they share is :mod:`~cycleisp_fast.data.datasets._common`):

- ``"folder"``: ``root/clean/x.png`` + ``root/noisy/x.png`` (same stem, any image suffix;
  :mod:`~cycleisp_fast.data.datasets.paired_folder`);
- ``"sidd-srgb"`` / ``"sidd-raw"``: SIDD-Medium/-Small, ``root/Data/<scene>/[NNNN_]GT_SRGB_010.PNG`` +
  ``NOISY_SRGB_010.PNG`` (and ``_011``), or ``GT_RAW_010.MAT`` + ``NOISY_RAW_010.MAT`` + ``METADATA_RAW_010.MAT``
  (:mod:`~cycleisp_fast.data.datasets.sidd`);
- ``"dnd-srgb"`` / ``"dnd-raw"``: the Darmstadt Noise Dataset benchmark, ``root/info.mat`` +
  ``root/images_srgb/0001.mat`` or ``root/images_raw/0001.mat`` (noisy only; its ground truth is private;
  :mod:`~cycleisp_fast.data.datasets.dnd`);
- ``"sidd-val-srgb"`` / ``"sidd-val-raw"``: SIDD's validation blocks, ``root/ValidationNoisyBlocksSrgb.mat`` +
  ``root/ValidationGtBlocksSrgb.mat`` (or ``...Raw.mat``), one item per 256x256 block
  (:mod:`cycleisp_fast.data.sidd_blocks`).

Items are dicts: ``name`` (str) plus ``clean``/``noisy`` ``(3, H, W)`` float32 in [0, 1] for sRGB, or
``(1, H, W)`` Bayer mosaics in [0, 1] with their ``pattern`` (colours of the top-left 2x2 block, row by
row: ``"RGGB" | "BGGR" | "GRBG" | "GBRG"``) for RAW.

MATLAB v7.3 ``.mat`` files are HDF5 files (read with h5py, :mod:`cycleisp_fast.data.matlab`), and HDF5 stores
MATLAB's column-major arrays with their axes reversed: a MATLAB ``H x W x 3`` image reads as ``(3, W, H)``. Every
array read here is put back in MATLAB's axis order (``.T``), and boxes and Bayer patterns are read in that same order.
"""

from __future__ import annotations

from cycleisp_fast.data.datasets._common import DatasetLayoutError, load_pair, shift_pattern
from cycleisp_fast.data.datasets.dnd import DND, DND_KINDS
from cycleisp_fast.data.datasets.layouts import LAYOUTS, detect_layout, matching_layouts, open_pairs
from cycleisp_fast.data.datasets.paired_folder import PairedImageFolder
from cycleisp_fast.data.datasets.sidd import SIDDRaw, SIDDSrgb, read_sidd_pattern

__all__ = [
    "DatasetLayoutError",
    "load_pair",
    "shift_pattern",
    "PairedImageFolder",
    "SIDDSrgb",
    "SIDDRaw",
    "read_sidd_pattern",
    "DND",
    "DND_KINDS",
    "LAYOUTS",
    "matching_layouts",
    "detect_layout",
    "open_pairs",
]
