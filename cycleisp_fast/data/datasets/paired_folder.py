"""Folders of pairs: ``root/clean/x.png`` + ``root/noisy/x.png``, paired by file stem (:class:`PairedImageFolder`,
layout ``"folder"``)."""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from cycleisp_fast.data.datasets._common import DatasetLayoutError, _check_root, _few, load_pair
from cycleisp_fast.data.images import is_image_file


def _images_by_stem(folder: Path) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and is_image_file(path):
            if path.stem in images:
                raise DatasetLayoutError(
                    f"two images with the stem {path.stem!r} in {folder}: "
                    f"{images[path.stem].name} and {path.name}; keep one"
                )
            images[path.stem] = path
    if not images:
        raise DatasetLayoutError(f"no image files in {folder}")
    return images


class PairedImageFolder(Dataset):
    """Pairs ``root/<clean>/x.png`` with ``root/<noisy>/x.png``: same stem, the suffixes may differ.

    Items: ``dict(name=stem, clean=(3, H, W), noisy=(3, H, W))`` float32 in [0, 1], sorted by name.
    """

    def __init__(self, root, clean: str = "clean", noisy: str = "noisy"):
        root = _check_root(root)
        folders = {"clean": root / clean, "noisy": root / noisy}
        for role, folder in folders.items():
            if not folder.is_dir():
                raise DatasetLayoutError(
                    f"missing the {role} folder {folder}; expected {root}/{clean}/<name>.png "
                    f"paired with {root}/{noisy}/<name>.png"
                )
        clean_images, noisy_images = (_images_by_stem(folder) for folder in folders.values())
        only_clean, only_noisy = clean_images.keys() - noisy_images.keys(), noisy_images.keys() - clean_images.keys()
        if only_clean or only_noisy:
            problems = [
                f"{len(names)} only in {folder}: {_few(names)}"
                for names, folder in ((only_clean, folders["clean"]), (only_noisy, folders["noisy"]))
                if names
            ]
            raise DatasetLayoutError("clean and noisy images must pair up by file stem; " + "; ".join(problems))
        self.root = root
        self.names = sorted(clean_images)
        self.pairs = [(clean_images[name], noisy_images[name]) for name in self.names]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict:
        return load_pair(self.names[index], *self.pairs[index])
