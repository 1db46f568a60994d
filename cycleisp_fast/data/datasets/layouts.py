"""Which layout a dataset folder has (:func:`matching_layouts`, :func:`detect_layout`) and the dataset that reads
it (:func:`open_pairs`), for every layout of :data:`LAYOUTS`."""

from __future__ import annotations

from torch.utils.data import Dataset

from cycleisp_fast.checks import check_choice
from cycleisp_fast.data.datasets._common import DatasetLayoutError, _check_root
from cycleisp_fast.data.datasets.dnd import DND, DND_KINDS
from cycleisp_fast.data.datasets.paired_folder import PairedImageFolder
from cycleisp_fast.data.datasets.sidd import SIDDRaw, SIDDSrgb, _sidd_domains
from cycleisp_fast.data.sidd_blocks import SIDD_VALIDATION_FILES, sidd_validation_blocks

LAYOUTS = ("folder", "sidd-srgb", "sidd-raw", "dnd-srgb", "dnd-raw", "sidd-val-srgb", "sidd-val-raw")


def matching_layouts(root) -> list[str]:
    """Every layout of :data:`LAYOUTS` whose files the folder ``root`` holds (a DND download holds two)."""
    root = _check_root(root)
    found = []
    if (root / "clean").is_dir() and (root / "noisy").is_dir():
        found.append("folder")
    if (root / "Data").is_dir():
        found += [f"sidd-{domain.lower()}" for domain in sorted(_sidd_domains(root), reverse=True)]
    if (root / "info.mat").is_file():
        found += [f"dnd-{kind}" for kind in DND_KINDS if (root / f"images_{kind}").is_dir()]
    found += [
        f"sidd-val-{kind}"
        for kind, names in SIDD_VALIDATION_FILES.items()
        if any((root / name).is_file() for name in names)
    ]
    return found


def detect_layout(root) -> str:
    """The layout (one of :data:`LAYOUTS`) of the dataset folder ``root``, from its structure."""
    found = matching_layouts(root)
    if not found:
        raise DatasetLayoutError(
            f"cannot tell the dataset layout of {root}; looked for: clean/ + noisy/ (folder), "
            "Data/<scene>/[NNNN_]GT_SRGB_010.PNG (sidd-srgb), Data/<scene>/[NNNN_]GT_RAW_010.MAT (sidd-raw), "
            "info.mat + images_srgb/ (dnd-srgb), info.mat + images_raw/ (dnd-raw), "
            "ValidationNoisyBlocksSrgb.mat + ValidationGtBlocksSrgb.mat (sidd-val-srgb), "
            "ValidationNoisyBlocksRaw.mat + ValidationGtBlocksRaw.mat (sidd-val-raw)"
        )
    if len(found) > 1:
        raise ValueError(f"{root} fits several dataset layouts {found}; pass layout= one of them")
    return found[0]


def open_pairs(root, layout: str = "auto", **options) -> Dataset:
    """Opens the dataset at ``root``.

    Args:
        root: the dataset folder.
        layout: one of :data:`LAYOUTS`, or ``"auto"`` to detect it (:func:`detect_layout`).
        options: passed on to the dataset class: ``clean=``/``noisy=`` (folder), ``pattern=`` (sidd-raw,
            sidd-val-raw), ``noise=`` (sidd-val-raw), ``margin=`` (dnd-*).

    Returns:
        :class:`PairedImageFolder`, :class:`SIDDSrgb`, :class:`SIDDRaw`, :class:`DND` or
        :class:`~cycleisp_fast.data.sidd_blocks.SIDDBlocks`.
    """
    check_choice(layout, "layout", ("auto",) + LAYOUTS)
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "folder":
        return PairedImageFolder(root, **options)
    if layout == "sidd-srgb":
        return SIDDSrgb(root, **options)
    if layout == "sidd-raw":
        return SIDDRaw(root, **options)
    if layout.startswith("sidd-val-"):
        return sidd_validation_blocks(root, layout.removeprefix("sidd-val-"), **options)
    return DND(root, kind=layout.removeprefix("dnd-"), **options)
