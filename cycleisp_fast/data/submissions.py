"""Benchmark submission files, as the DND and SIDD servers take them: MATLAB files written with
``scipy.io.savemat`` (MATLAB v5 format, which MATLAB's ``load`` reads), each through :func:`atomic_path`.

DND (https://noise.visinf.tu-darmstadt.de; the devkit's ``bundle_submissions.py``, as CycleISP ships it):

- one file per bounding box, ``<image>_<box>.mat`` (``0001_01.mat`` ... ``0050_20.mat``), holding
  ``Idenoised_crop``: the denoised box, float32 (MATLAB single) in [0, 1], ``h x w x 3`` (sRGB) or ``h x w`` (RAW);
- one bundle per image, ``bundled/<image>.mat`` (``0001.mat`` ... ``0050.mat``), what the server takes: ``Idenoised``,
  a ``1 x n_boxes`` cell array of the crops (20 in DND), ``israw`` (logical) and ``eval_version`` (char, ``'1.0'``).

SIDD (https://www.eecs.yorku.ca/~kamel/sidd/benchmark.php; its MATLAB kit's ``SIDD_Denoise.m``, ``DenoiseSrgb.m``,
``DenoiseRaw.m``, ``Demo_SIDD.m``): ``SubmitSrgb.mat`` holding ``DenoisedBlocksSrgb``, an ``n_images x n_blocks``
(40 x 32) cell array of denoised blocks, ``TimeMPSrgb``, the denoising time in seconds per megapixel (MP = 1024 *
1024 pixels), and ``OptionalData``, a struct of text fields (``MethodName``, ``Authors``, ``PaperTitle``, ``Venue``,
``MachineSpecs``, ...); for RAW ``SubmitRaw.mat`` with ``DenoisedBlocksRaw``, ``TimeMPRaw`` and ``OptionalData``.
The blocks keep the noisy blocks' dtype and layout (sRGB ``h x w x 3`` uint8, RAW ``h x w`` float). SIDD's newer
Kaggle competitions (``sidd-benchmark-srgb-psnr``, ``sidd-benchmark-raw-psnr``; the dataset author's
``sidd_kaggle_submit`` scripts) take the same blocks as ``SubmitSrgb.csv`` / ``SubmitRaw.csv``: columns ``ID`` (0 ...,
image-major: ``image * n_blocks + block``) and ``BLOCK`` (base64 of the block's bytes, C order, its dtype).

Example::

    write_dnd_crop(out / "0001_01.mat", crop)                       # (512, 512, 3) float32
    write_dnd_bundle(out / "bundled" / "0001.mat", crops, israw=False)
    write_sidd_submission(out, "srgb", blocks, 0.12, {"MethodName": "cycleisp-srgb"})  # (40, 32, 256, 256, 3)
    write_sidd_kaggle_csv(out, "srgb", blocks)
"""

from __future__ import annotations

import base64
import csv
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.io

from cycleisp_fast.data.files import atomic_path

DND_EVAL_VERSION = "1.0"
SIDD_SUBMISSIONS = {
    "srgb": ("SubmitSrgb.mat", "DenoisedBlocksSrgb", "TimeMPSrgb"),
    "raw": ("SubmitRaw.mat", "DenoisedBlocksRaw", "TimeMPRaw"),
}
"""Kind -> (file name, blocks variable, time variable) of a SIDD submission."""
SIDD_KAGGLE_FILES = {"srgb": "SubmitSrgb.csv", "raw": "SubmitRaw.csv"}
"""Kind -> file name of a SIDD Kaggle submission."""
SIDD_MEGAPIXEL = 1024 * 1024
"""Pixels per megapixel in SIDD's ``TimeMP`` (``DenoiseSrgb.m``: ``TimeMP * 1024 * 1024 / (nImages * nBlocks * h *
w)``)."""
_MATLAB_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")


def _savemat(path: Path, variables: dict, *, compress: bool = False) -> Path:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            scipy.io.savemat(handle, variables, do_compression=compress)
    return Path(path)


def _cell_array(arrays: Sequence[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """A numpy object array of ``shape`` holding ``arrays`` (row-major): savemat writes it as a MATLAB cell."""
    cells = np.empty(len(arrays), dtype=object)
    for index, array in enumerate(arrays):
        cells[index] = array
    return cells.reshape(shape)


def dnd_crop_shape(box_shape: tuple[int, int], israw: bool) -> tuple[int, ...]:
    """The shape of a box's ``Idenoised_crop``: ``(h, w)`` for RAW, ``(h, w, 3)`` for sRGB."""
    return tuple(box_shape) if israw else (*box_shape, 3)


def write_dnd_crop(path, crop: np.ndarray) -> Path:
    """Writes one denoised DND box, ``Idenoised_crop`` (``(h, w, 3)`` or ``(h, w)``, clipped to [0, 1], stored as
    float32), atomically."""
    crop = np.asarray(crop)
    if crop.ndim not in (2, 3) or (crop.ndim == 3 and crop.shape[2] != 3):
        raise ValueError(f"a DND crop must be (h, w, 3) sRGB or (h, w) RAW, got shape {crop.shape}")
    return _savemat(Path(path), {"Idenoised_crop": np.clip(crop, 0, 1).astype(np.float32)})


def is_complete_dnd_crop(path, shape: tuple[int, ...]) -> bool:
    """Whether ``path`` is a DND box file holding a float32 ``Idenoised_crop`` of ``shape`` (read from its header,
    the data is not loaded). Files are written atomically, so a complete header means a complete file."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        variables = scipy.io.whosmat(path)
    except Exception:  # scipy raises many kinds for a foreign or damaged file: it is redone
        return False
    return ("Idenoised_crop", tuple(shape), "single") in variables


def read_dnd_crop(path) -> np.ndarray:
    """The ``Idenoised_crop`` array of a DND box file."""
    return scipy.io.loadmat(path, variable_names=["Idenoised_crop"])["Idenoised_crop"]


def write_dnd_bundle(path, crops: Sequence[np.ndarray], *, israw: bool) -> Path:
    """Writes the bundle of one DND image, atomically: ``Idenoised`` (a ``1 x len(crops)`` cell array of the
    crops, in box order), ``israw`` (logical) and ``eval_version`` (``'1.0'``)."""
    if not isinstance(israw, bool):
        raise TypeError(f"israw must be a bool, got {type(israw).__name__}")
    return _savemat(
        Path(path),
        {"Idenoised": _cell_array(list(crops), (1, len(crops))), "israw": israw, "eval_version": DND_EVAL_VERSION},
    )


def check_matlab_field_names(names) -> None:
    """Each of ``names`` must be a MATLAB struct field name (a letter, then letters, digits or ``_``, <= 63)."""
    for name in names:
        if not isinstance(name, str) or not _MATLAB_NAME.fullmatch(name):
            raise ValueError(
                f"OptionalData field {name!r} is not a MATLAB field name (a letter, then letters, "
                "digits or '_', at most 63)"
            )


def _check_sidd_blocks(kind: str, blocks: np.ndarray) -> None:
    if kind not in SIDD_SUBMISSIONS:
        raise ValueError(f"kind must be one of {tuple(SIDD_SUBMISSIONS)}, got {kind!r}")
    rank = 5 if kind == "srgb" else 4
    if not isinstance(blocks, np.ndarray) or blocks.ndim != rank:
        raise ValueError(
            f"{kind} blocks must be a numpy array (n_images, n_blocks, h, w"
            f"{', 3' if kind == 'srgb' else ''}), got {getattr(blocks, 'shape', type(blocks).__name__)}"
        )


def write_sidd_submission(
    outdir, kind: str, blocks: np.ndarray, seconds_per_megapixel: float, optional_data: dict[str, str]
) -> Path:
    """Writes ``outdir/SubmitSrgb.mat`` or ``outdir/SubmitRaw.mat`` (:data:`SIDD_SUBMISSIONS`), atomically and
    compressed (as MATLAB's own ``save`` does).

    Args:
        outdir: the folder to write the file into.
        kind: ``"srgb"`` or ``"raw"``.
        blocks: ``(n_images, n_blocks, h, w, 3)`` uint8 (sRGB) or ``(n_images, n_blocks, h, w)`` float (RAW), the
            denoised blocks in the noisy blocks' dtype; written as an ``n_images x n_blocks`` cell array.
        seconds_per_megapixel: the ``TimeMP`` value, > 0.
        optional_data: the ``OptionalData`` struct's fields (MATLAB names -> text).

    Returns:
        The path written.
    """
    _check_sidd_blocks(kind, blocks)
    if not seconds_per_megapixel > 0:
        raise ValueError(f"seconds_per_megapixel must be > 0, got {seconds_per_megapixel!r}")
    check_matlab_field_names(optional_data)
    file_name, blocks_name, time_name = SIDD_SUBMISSIONS[kind]
    cells = _cell_array(list(blocks.reshape(-1, *blocks.shape[2:])), blocks.shape[:2])
    return _savemat(
        Path(outdir) / file_name,
        {blocks_name: cells, time_name: float(seconds_per_megapixel), "OptionalData": dict(optional_data)},
        compress=True,
    )


def write_sidd_kaggle_csv(outdir, kind: str, blocks: np.ndarray) -> Path:
    """Writes ``outdir/SubmitSrgb.csv`` or ``outdir/SubmitRaw.csv`` (:data:`SIDD_KAGGLE_FILES`), atomically: one row
    per block, ``ID`` (image-major) and ``BLOCK`` (base64 of the block's C-order bytes in ``blocks``' dtype)."""
    _check_sidd_blocks(kind, blocks)
    path = Path(outdir) / SIDD_KAGGLE_FILES[kind]
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["ID", "BLOCK"])
            for index, block in enumerate(blocks.reshape(-1, *blocks.shape[2:])):
                writer.writerow([index, base64.b64encode(np.ascontiguousarray(block).tobytes()).decode("ascii")])
    return path
