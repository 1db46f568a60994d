"""The base of every training recipe: :class:`Task` (what the loop of :mod:`cycleisp_fast.training.loop` calls),
:class:`CleanImageTask` (recipes on clean sRGB patches whose pairs are made on the device), the validation metric
:func:`mean_psnr` and the helpers the task families share: reading clean images, loading ``init`` weights,
splitting a validation batch.

Synthetic pairs are made on the training device from clean patches (:class:`CleanPatches`), keyed by
``(seed, offset)`` with ``offset = step * world_size + rank``. When no image folder is given, the embedded sample
photographs serve. Validation uses a fixed set of pairs: seeded crops (no flips) of ``val.images`` or, when it is
``""``, of the training images, with noise drawn under another seed than training's.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from cycleisp_fast.data.images import list_images, read_image
from cycleisp_fast.models import load_official
from cycleisp_fast.pipelines.metrics import mean_finite, psnr, ssim
from cycleisp_fast.pipelines.synthesis import CYCLEISP_WEIGHTS, CleanPatches
from cycleisp_fast.seeds import VALIDATION_SEED_SALT
from cycleisp_fast.training.config import ConfigError
from cycleisp_fast.training.schema import patch_schedule

ISP_FILE_NAMES = CYCLEISP_WEIGHTS
"""The files of the ISP networks in a weights folder, the official names that ``cycleisp-fast synth --weights DIR``
reads too; ISP runs write theirs there."""


def load_clean_images(folder: str) -> dict[str, Tensor]:
    """Name -> ``(3, H, W)`` image of ``folder``, or of the embedded sample photographs when it is ``""``."""
    if not folder:
        from cycleisp_fast.data.samples import sample_images

        return sample_images()
    return {os.fspath(path): read_image(path) for path in list_images(folder)}


def check_image_sizes(images: dict[str, Tensor], patch_size: int, key: str) -> list[Tensor]:
    """The images as a list, after checking that each holds a ``patch_size`` crop (the error names the file)."""
    for name, image in images.items():
        if min(image.shape[1:]) < patch_size:
            raise ConfigError(
                f"image {name} is {image.shape[2]}x{image.shape[1]}, smaller than {key} = {patch_size}: "
                f"lower it or remove the image"
            )
    return list(images.values())


def mean_psnr(estimate: Tensor, target: Tensor) -> float:
    """The mean PSNR (dB, range 1) over the images of ``(N, C, H, W)`` batches, the estimate clamped to [0, 1]."""
    return mean_finite(psnr(estimate.float().clamp(0, 1), target.float()))


class Task(abc.ABC):
    """One recipe. Subclasses set :attr:`model_name` and build :attr:`network` (the module that is saved; the
    loss runs it through ``module``, the network or its DDP wrapper) in ``__init__``.

    Args:
        config: the resolved config.
        device: the training device.
    """

    model_name = ""
    network: nn.Module

    def __init__(self, config: dict[str, Any], device: torch.device):
        self.config, self.device = config, device

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """What the network's constructor needs besides the task (stored in checkpoints)."""
        return dict(self.config.get("model", {}))

    @abc.abstractmethod
    def dataset(self, length: int) -> torch.utils.data.Dataset:
        """``length`` training items (CPU tensors, one per patch), item ``i`` reproducible from (seed, i)."""

    @abc.abstractmethod
    def make_batch(self, items: Any, offset: int) -> dict[str, Tensor]:
        """The training batch of collated ``items`` (moved to the device here), pairs keyed by ``offset``."""

    @abc.abstractmethod
    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """The scalar training loss of ``batch`` through ``module``."""

    @abc.abstractmethod
    def validation_batches(self) -> list[dict[str, Tensor]]:
        """The fixed validation set, in chunks of at most ``batch_size`` (empty when ``val.count`` is 0)."""

    @abc.abstractmethod
    def metrics(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """Validation metrics of one batch through :attr:`network` (names without the ``val_`` prefix); called
        under ``torch.no_grad``, with the network in eval mode."""

    def extra_files(self) -> dict[str, dict[str, Tensor]]:
        """File name -> state dict, written next to each checkpoint (the ISP networks in the official layout)."""
        return {}

    def preview(self, batch: dict[str, Tensor]) -> Tensor | None:
        """A few validation images to look at, ``(n, 3, H, W)`` in [0, 1] (TensorBoard), or None; called as
        :meth:`metrics` is."""
        return None

    def load_init(self, path: str) -> None:
        """Loads the starting weights of ``config["init"]`` into :attr:`network` (see :func:`load_initial_weights`)."""
        load_initial_weights(self.network, path, self.model_name, self.model_kwargs)


def load_initial_weights(network: nn.Module, path: str, model_name: str, model_kwargs: dict[str, Any]) -> None:
    """Loads ``path`` into ``network``: a training checkpoint of this package (its ``"model"`` and
    ``"model_kwargs"`` must match) or official weights (:func:`load_official`: the keys must match)."""
    if not Path(path).is_file():
        raise ConfigError(f"config key 'init': weights file {path!r} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ConfigError(
            f"config key 'init': {path!r} is not a torch checkpoint: {type(error).__name__}: {error}"
        ) from error
    if isinstance(checkpoint, dict) and "model" in checkpoint and isinstance(checkpoint["model"], str):
        if checkpoint["model"] != model_name:
            raise ConfigError(
                f"config key 'init': {path!r} holds a {checkpoint['model']!r} model, this task trains {model_name!r}"
            )
        saved_kwargs = checkpoint.get("model_kwargs", {})
        if saved_kwargs != model_kwargs:
            raise ConfigError(
                f"config key 'init': {path!r} was trained with [model] {saved_kwargs}, the config asks "
                f"for {model_kwargs}: make [model] match the checkpoint"
            )
    try:
        load_official(network, checkpoint)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"config key 'init': {path!r}: {error}") from error


class ScheduledPatches(torch.utils.data.Dataset):
    """Progressive crops: item ``i`` (of step ``i // items_per_step``) is item ``i`` of the crops of the size in
    force at that step (same image, position and flip as at any other size: each is keyed by ``(seed, i)``).

    Args:
        crops: size -> the patches of that size (:class:`CleanPatches`, or any dataset keyed by ``(seed, i)``).
        schedule: ``[(first step, size), ...]``, rising steps from 0.
        items_per_step: the items of one step over all processes (``batch_size x world size``).
    """

    def __init__(
        self, crops: dict[int, torch.utils.data.Dataset], schedule: list[tuple[int, int]], items_per_step: int
    ):
        self.crops, self.schedule, self.items_per_step = crops, schedule, items_per_step

    def __len__(self) -> int:
        return len(next(iter(self.crops.values())))

    def __getitem__(self, index: int) -> Tensor:
        step = index // self.items_per_step
        size = next(size for first, size in reversed(self.schedule) if first <= step)
        return self.crops[size][index]


def scheduled_patches(
    make: Callable[[int], torch.utils.data.Dataset], config: dict[str, Any], length: int
) -> torch.utils.data.Dataset:
    """The training patches of a run: ``make(patch_size)``, or with a ``patch_schedule`` a :class:`ScheduledPatches`
    over ``make(size)`` of each size of the schedule (``length`` items in all)."""
    schedule = patch_schedule(config)
    crops = {size: make(size) for size in {size for _, size in schedule}}
    if len(schedule) == 1:
        return crops[config["patch_size"]]
    return ScheduledPatches(crops, schedule, items_per_step=length // config["steps"])


class CleanImageTask(Task):
    """Base of the tasks that crop clean sRGB images (``data.images``) and make their pairs on the device."""

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        val = config["val"]
        images = load_clean_images(config["data"]["images"])
        schedule = patch_schedule(config)
        largest = max(size for _, size in schedule)
        self.images = check_image_sizes(images, largest, "patch_size" if len(schedule) == 1 else "patch_schedule")
        self.validation_images = []
        if val["count"]:
            validation_images = load_clean_images(val["images"]) if val["images"] else images
            self.validation_images = check_image_sizes(validation_images, val["patch_size"], "val.patch_size")

    def dataset(self, length: int) -> torch.utils.data.Dataset:
        """``length`` seeded random ``(3, p, p)`` crops of the training images, flipped or rotated; ``p`` is
        ``patch_size``, or with a ``patch_schedule`` the size in force at the item's step."""
        return scheduled_patches(
            lambda size: CleanPatches(self.images, size, length=length, seed=self.config["seed"]), self.config, length
        )

    @abc.abstractmethod
    def make_pairs(self, clean: Tensor, seed: int, offset: int) -> dict[str, Tensor]:
        """The batch of clean ``(N, 3, p, p)`` patches on the device, pairs keyed by ``(seed, offset)``."""

    def make_batch(self, items: Tensor, offset: int) -> dict[str, Tensor]:
        """The clean ``(N, 3, p, p)`` patches moved to the device, their pairs made under ``(seed, offset)``."""
        return self.make_pairs(items.to(self.device, non_blocking=True), self.config["seed"], offset)

    def validation_batches(self) -> list[dict[str, Tensor]]:
        """Pairs of ``val.count`` seeded crops (no flips) of the validation images, in chunks of ``batch_size``."""
        val, seed = self.config["val"], self.config["seed"] ^ VALIDATION_SEED_SALT
        if not val["count"]:
            return []
        patches = CleanPatches(self.validation_images, val["patch_size"], length=val["count"], seed=seed, augment=False)
        pairs = self.make_pairs(torch.stack([patches[i] for i in range(val["count"])]).to(self.device), seed, 0)
        return split_batch(pairs, self.config["batch_size"])


def split_batch(batch: dict[str, Tensor], size: int) -> list[dict[str, Tensor]]:
    """``batch`` cut along its first dimension into batches of at most ``size``."""
    count = next(iter(batch.values())).shape[0]
    return [{key: value[start : start + size] for key, value in batch.items()} for start in range(0, count, size)]


class SrgbDenoiserMetrics:
    """An sRGB denoiser's validation: the PSNR and SSIM of the noisy input and of the output."""

    network: nn.Module

    def metrics(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """``psnr_input`` and ``ssim_input``, of ``noisy``, and ``psnr`` and ``ssim``, of ``network(noisy)``
        (clamped to [0, 1]), against ``clean``; SSIM as :func:`~cycleisp_fast.pipelines.metrics.ssim`, for patches of
        at least its 11-pixel window (smaller validation patches get PSNR only)."""
        noisy, clean = batch["noisy"].float(), batch["clean"].float()
        denoised = self.network(batch["noisy"]).float().clamp(0, 1)
        metrics = {"psnr_input": mean_psnr(noisy, clean), "psnr": mean_psnr(denoised, clean)}
        if min(clean.shape[-2:]) >= 11:
            metrics["ssim_input"] = float(ssim(noisy.clamp(0, 1), clean).mean())
            metrics["ssim"] = float(ssim(denoised, clean).mean())
        return metrics

    def preview(self, batch: dict[str, Tensor]) -> Tensor:
        """Up to 4 validation images, each ``noisy | denoised | clean`` side by side: ``(n, 3, H, 3W)``."""
        noisy, clean = batch["noisy"][:4], batch["clean"][:4]
        return torch.cat([noisy, self.network(noisy), clean], dim=3).clamp(0, 1)
