"""Data: image files, atomic writes, bundled sample photographs, and datasets of real noisy images."""

from cycleisp_fast.data.datasets import (
    DND,
    LAYOUTS,
    DatasetLayoutError,
    PairedImageFolder,
    SIDDRaw,
    SIDDSrgb,
    detect_layout,
    open_pairs,
)
from cycleisp_fast.data.files import DataFileError, atomic_path, save_numpy, save_torch
from cycleisp_fast.data.images import IMAGE_SUFFIXES, list_images, read_image, write_image
from cycleisp_fast.data.raw import RAW_SUFFIXES, RawImage, is_raw_file, read_raw, restore_geometry, unify_to_rggb
from cycleisp_fast.data.samples import SAMPLE_NAMES, sample_images

__all__ = [
    "DataFileError",
    "atomic_path",
    "save_numpy",
    "save_torch",
    "IMAGE_SUFFIXES",
    "list_images",
    "read_image",
    "write_image",
    "SAMPLE_NAMES",
    "sample_images",
    "DND",
    "LAYOUTS",
    "DatasetLayoutError",
    "PairedImageFolder",
    "SIDDRaw",
    "SIDDSrgb",
    "detect_layout",
    "open_pairs",
    "RAW_SUFFIXES",
    "RawImage",
    "is_raw_file",
    "read_raw",
    "restore_geometry",
    "unify_to_rggb",
]
