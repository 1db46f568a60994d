"""The training recipes (``task = "..."`` in a config): each builds its network, its patches, its loss and its
validation metrics; :mod:`cycleisp_fast.pipelines.training` runs any of them.

==================  ============================================  ==============================================
task                network (checkpoint ``"model"``)               pairs and loss
==================  ============================================  ==============================================
denoise-srgb        ``DenoiseNet(raw=False)`` (cycleisp-srgb)     synthesised sRGB noisy/clean, L1
denoise-raw         ``DenoiseNet(raw=True)`` (cycleisp-raw)       synthesised packed RAW + variance map, L1
aindnet-synthetic   ``AINDNet`` (aindnet)                         synthesised sRGB, L1 + 0.05 x noise-map loss
aindnet-transfer    ``AINDNet`` (aindnet), from a checkpoint      real pairs (``open_pairs``), L1; TF or RT
rgb2raw             ``Rgb2Raw`` (cycleisp-rgb2raw)                sRGB -> packed RAW (analytic), L1 + log L1
raw2rgb             ``CCM`` + ``Raw2Rgb`` (cycleisp-raw2rgb)      packed RAW + sRGB guide -> sRGB, L1
cycleisp-joint      all three (cycleisp-isp)                      beta L_rgb2raw + (1 - beta) L_raw2rgb
==================  ============================================  ==============================================

Synthetic pairs are made on the training device from clean patches (:class:`CleanPatches`), keyed by
``(seed, offset)`` with ``offset = step * world_size + rank``. The ISP tasks pair each clean sRGB patch with the
packed RAW of Brooks et al.'s analytic inverse ISP under a random camera: a stand-in for the real MIT-Adobe
FiveK RAW/sRGB pairs the paper trains on, so that the recipes run without data. When no image folder is given,
the embedded sample photographs serve. Validation uses a fixed set of pairs: seeded crops (no flips) of
``val.images`` or, when it is ``""``, of the training images, with noise drawn under another seed than training's.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from cycleisp_fast.data.images import list_images, read_image
from cycleisp_fast.models import (CCM, AINDNet, DenoiseNet, Raw2Rgb, Rgb2Raw, aindnet_real_loss, aindnet_synthetic_loss,
                                  joint_loss, load_official, raw2rgb_loss, rgb2raw_loss, transfer_rt, transfer_tf)
from cycleisp_fast.noise import NoiseModel
from cycleisp_fast.pipelines.metrics import mean_finite, psnr
from cycleisp_fast.pipelines.synthesis import CYCLEISP_WEIGHTS, CleanPatches, dihedral, make_synthesizer
from cycleisp_fast.pipelines.train_config import SRGB_PAIR_LAYOUTS, ConfigError
from cycleisp_fast.pipelines.unprocessing import random_camera_params, unprocess
from cycleisp_fast.seeds import VALIDATION_SEED_SALT, Stream, keyed_generator

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
            raise ConfigError(f"image {name} is {image.shape[2]}x{image.shape[1]}, smaller than {key} = {patch_size}: "
                              f"lower it or remove the image")
    return list(images.values())


class PairPatches(torch.utils.data.Dataset):
    """Random aligned crops of real pairs: item ``i`` is ``{"noisy", "clean"}``, ``(3, p, p)`` each, from a random
    pair at an even offset under one of the 8 flips/rotations, drawn from a generator keyed by ``(seed, i)``.
    ``pairs``: a dataset of ``{"noisy", "clean"}`` ``(3, H, W)`` items (``cycleisp_fast.data.datasets``)."""

    def __init__(self, pairs: Sequence[Mapping[str, Tensor]], patch_size: int, *, length: int, seed: int):
        if len(pairs) == 0:
            raise ValueError("pairs must hold at least one pair")
        self.pairs, self.patch_size, self.length, self.seed = pairs, patch_size, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} patches")
        draws = torch.rand(4, generator=keyed_generator(self.seed, index, Stream.PAIR), dtype=torch.float64).tolist()
        pair_index = min(int(draws[0] * len(self.pairs)), len(self.pairs) - 1)
        pair = self.pairs[pair_index]
        height, width = pair["clean"].shape[-2:]
        p = self.patch_size
        if min(height, width) < p:
            name = pair.get("name", pair_index)
            raise ValueError(f"pair {name!r} is {width}x{height}, smaller than patch_size = {p}")
        top, left = 2 * int(draws[1] * ((height - p) // 2 + 1)), 2 * int(draws[2] * ((width - p) // 2 + 1))
        k = min(int(draws[3] * 8), 7)
        return {key: dihedral(pair[key][:, top:top + p, left:left + p], k).contiguous() for key in ("noisy", "clean")}


def centre_crop(image: Tensor, size: int) -> Tensor:
    """The centred ``size x size`` crop (even offsets) of ``(..., H, W)``; the whole image if it is smaller."""
    height, width = image.shape[-2:]
    top, left = max(height - size, 0) // 4 * 2, max(width - size, 0) // 4 * 2
    return image[..., top:top + size, left:left + size]


def mean_psnr(estimate: Tensor, target: Tensor) -> float:
    """The mean PSNR (dB, range 1) over the images of ``(N, C, H, W)`` batches, the estimate clamped to [0, 1]."""
    return mean_finite(psnr(estimate.float().clamp(0, 1), target.float()))


class Task(abc.ABC):
    """One recipe. Subclasses set :attr:`model_name` and build :attr:`network` (the module that is saved; the
    loss runs it through ``module``, the network or its DDP wrapper) in ``__init__``.

    Args:
        config: the resolved config. device: the training device.
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
        raise ConfigError(f"config key 'init': {path!r} is not a torch checkpoint: {type(error).__name__}: {error}"
                          ) from error
    if isinstance(checkpoint, dict) and "model" in checkpoint and isinstance(checkpoint["model"], str):
        if checkpoint["model"] != model_name:
            raise ConfigError(f"config key 'init': {path!r} holds a {checkpoint['model']!r} model, this task trains "
                              f"{model_name!r}")
        saved_kwargs = checkpoint.get("model_kwargs", {})
        if saved_kwargs != model_kwargs:
            raise ConfigError(f"config key 'init': {path!r} was trained with [model] {saved_kwargs}, the config asks "
                              f"for {model_kwargs}: make [model] match the checkpoint")
    try:
        load_official(network, checkpoint)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"config key 'init': {path!r}: {error}") from error


# --------------------------------------------------------------------------------------------------------
# Tasks on clean sRGB patches: the synthetic denoisers and the ISP networks
# --------------------------------------------------------------------------------------------------------

class CleanImageTask(Task):
    """Base of the tasks that crop clean sRGB images (``data.images``) and make their pairs on the device."""

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        val = config["val"]
        images = load_clean_images(config["data"]["images"])
        self.images = check_image_sizes(images, config["patch_size"], "patch_size")
        self.validation_images = []
        if val["count"]:
            validation_images = load_clean_images(val["images"]) if val["images"] else images
            self.validation_images = check_image_sizes(validation_images, val["patch_size"], "val.patch_size")

    def dataset(self, length: int) -> CleanPatches:
        return CleanPatches(self.images, self.config["patch_size"], length=length, seed=self.config["seed"])

    @abc.abstractmethod
    def make_pairs(self, clean: Tensor, seed: int, offset: int) -> dict[str, Tensor]:
        """The batch of clean ``(N, 3, p, p)`` patches on the device, pairs keyed by ``(seed, offset)``."""

    def make_batch(self, items: Tensor, offset: int) -> dict[str, Tensor]:
        return self.make_pairs(items.to(self.device, non_blocking=True), self.config["seed"], offset)

    def validation_batches(self) -> list[dict[str, Tensor]]:
        val, seed = self.config["val"], self.config["seed"] ^ VALIDATION_SEED_SALT
        if not val["count"]:
            return []
        patches = CleanPatches(self.validation_images, val["patch_size"], length=val["count"], seed=seed, augment=False)
        pairs = self.make_pairs(torch.stack([patches[i] for i in range(val["count"])]).to(self.device), seed, 0)
        return split_batch(pairs, self.config["batch_size"])


def split_batch(batch: dict[str, Tensor], size: int) -> list[dict[str, Tensor]]:
    """``batch`` cut along its first dimension into batches of at most ``size``."""
    count = next(iter(batch.values())).shape[0]
    return [{key: value[start:start + size] for key, value in batch.items()} for start in range(0, count, size)]


class SyntheticDenoiseTask(CleanImageTask):
    """Base of the denoisers trained on synthesised pairs (:func:`make_synthesizer` of ``[data]``/``[noise]``)."""

    noise_std = False

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        data, noise = config["data"], config["noise"]
        weights = None
        if data["synthesizer"] == "cycleisp":
            weights = {name: os.path.join(data["isp_weights"], file) for name, file in ISP_FILE_NAMES.items()}
            missing = [path for path in weights.values() if not os.path.isfile(path)]
            if missing:
                raise ConfigError(f"config key 'data.isp_weights': missing {', '.join(missing)} (the folder must hold "
                                  f"{', '.join(ISP_FILE_NAMES.values())} in the official layout)")
        noise_model = NoiseModel(noise["levels"], noise["model"])
        self.synthesizer = make_synthesizer(data["synthesizer"], weights, noise=noise_model, noise_std=self.noise_std,
                                            device=device)

    def make_pairs(self, clean: Tensor, seed: int, offset: int) -> dict[str, Tensor]:
        with torch.no_grad():
            pairs = self.synthesizer(clean, seed=seed, offset=offset)
        return {name: value for name, value in pairs._asdict().items() if isinstance(value, Tensor)}


class SrgbDenoiserMetrics:
    """An sRGB denoiser's validation: the PSNR of the noisy input and of the output."""

    network: nn.Module

    def metrics(self, batch: dict[str, Tensor]) -> dict[str, float]:
        return {"psnr_input": mean_psnr(batch["noisy"], batch["clean"]),
                "psnr": mean_psnr(self.network(batch["noisy"]), batch["clean"])}


class DenoiseSrgbTask(SrgbDenoiserMetrics, SyntheticDenoiseTask):
    model_name = "cycleisp-srgb"

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        self.network = DenoiseNet(raw=False, **self.model_kwargs)

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return torch.nn.functional.l1_loss(module(batch["noisy"]), batch["clean"])


class DenoiseRawTask(SyntheticDenoiseTask):
    model_name = "cycleisp-raw"

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        self.network = DenoiseNet(raw=True, **self.model_kwargs)

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return torch.nn.functional.l1_loss(module(batch["noisy_raw"], batch["variance"]), batch["clean_raw"])

    def metrics(self, batch: dict[str, Tensor]) -> dict[str, float]:
        denoised = self.network(batch["noisy_raw"], batch["variance"])
        return {"psnr_input": mean_psnr(batch["noisy_raw"], batch["clean_raw"]),
                "psnr": mean_psnr(denoised, batch["clean_raw"])}


class AindnetSyntheticTask(SrgbDenoiserMetrics, SyntheticDenoiseTask):
    model_name = "aindnet"
    noise_std = True

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        self.network = AINDNet(**self.model_kwargs)

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        denoised, noise_map, coarse = module(batch["noisy"], return_noise_map=True)
        weights = self.config["loss"]
        return aindnet_synthetic_loss(denoised, batch["clean"], noise_map, coarse, batch["noise_std"],
                                      lam=weights["noise_weight"], alpha=weights["asymmetry"])


class IspTask(CleanImageTask):
    """Base of the ISP tasks: each clean sRGB patch paired with its packed RAW through the analytic inverse ISP
    (:func:`unprocess`) under a random camera (keyed by ``(seed, offset)``)."""

    def make_pairs(self, clean: Tensor, seed: int, offset: int) -> dict[str, Tensor]:
        camera = random_camera_params(clean.shape[0], generator=keyed_generator(seed, offset, Stream.CAMERA),
                                      device=clean.device, dtype=clean.dtype)
        with torch.no_grad():
            return {"srgb": clean, "raw": unprocess(clean, camera)}

    @property
    def model_kwargs(self) -> dict[str, Any]:
        return {}

    def extra_files(self) -> dict[str, dict[str, Tensor]]:
        return {ISP_FILE_NAMES[name]: module.state_dict() for name, module in self.network.named_children()}

    def load_init(self, path: str) -> None:
        """``init`` is a folder with the official-layout files of the networks this task trains."""
        if not Path(path).is_dir():
            raise ConfigError(f"config key 'init': for task {self.config['task']!r} it must be a folder holding "
                              f"{', '.join(ISP_FILE_NAMES[n] for n, _ in self.network.named_children())}, got {path!r}")
        for name, module in self.network.named_children():
            file = os.path.join(path, ISP_FILE_NAMES[name])
            try:
                load_official(module, file)
            except FileNotFoundError:
                raise ConfigError(f"config key 'init': {file} does not exist") from None
            except (ValueError, TypeError) as error:
                raise ConfigError(f"config key 'init': {file}: {error}") from error


class Rgb2RawNetworks(nn.Module):
    """RGB2RAW alone: sRGB ``(N, 3, H, W)`` -> packed RAW ``(N, 4, H/2, W/2)``."""

    def __init__(self):
        super().__init__()
        self.rgb2raw = Rgb2Raw()

    def forward(self, srgb: Tensor) -> Tensor:
        return self.rgb2raw(srgb)


class Raw2RgbNetworks(nn.Module):
    """CCM + RAW2RGB: packed RAW ``(N, 4, h, w)`` guided by the sRGB ``(N, 3, 2h, 2w)`` -> sRGB. Raw2Rgb's unused
    ``conv1x1`` is frozen (it gets no gradient, which DDP would take for an error)."""

    def __init__(self):
        super().__init__()
        self.ccm, self.raw2rgb = CCM(), Raw2Rgb()
        self.raw2rgb.conv1x1.requires_grad_(False)

    def forward(self, raw: Tensor, srgb: Tensor) -> Tensor:
        return self.raw2rgb(raw, self.ccm(srgb))


class CycleIspNetworks(nn.Module):
    """The joint cycle: sRGB -> RGB2RAW -> RAW2RGB (guided by CCM of the sRGB); returns ``(raw, srgb)``."""

    def __init__(self):
        super().__init__()
        self.rgb2raw, self.ccm, self.raw2rgb = Rgb2Raw(), CCM(), Raw2Rgb()
        self.raw2rgb.conv1x1.requires_grad_(False)

    def forward(self, srgb: Tensor) -> tuple[Tensor, Tensor]:
        raw = self.rgb2raw(srgb)
        return raw, self.raw2rgb(raw, self.ccm(srgb))


class Rgb2RawTask(IspTask):
    model_name = "cycleisp-rgb2raw"

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        self.network = Rgb2RawNetworks()

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return rgb2raw_loss(module(batch["srgb"]), batch["raw"], self.config["loss"]["log_eps"])

    def metrics(self, batch: dict[str, Tensor]) -> dict[str, float]:
        return {"psnr": mean_psnr(self.network(batch["srgb"]), batch["raw"])}


class Raw2RgbTask(IspTask):
    model_name = "cycleisp-raw2rgb"

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        self.network = Raw2RgbNetworks()

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return raw2rgb_loss(module(batch["raw"], batch["srgb"]), batch["srgb"])

    def metrics(self, batch: dict[str, Tensor]) -> dict[str, float]:
        return {"psnr": mean_psnr(self.network(batch["raw"], batch["srgb"]), batch["srgb"])}


class CycleIspJointTask(IspTask):
    model_name = "cycleisp-isp"

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        self.network = CycleIspNetworks()

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        raw, srgb = module(batch["srgb"])
        weights = self.config["loss"]
        return joint_loss(raw, batch["raw"], srgb, batch["srgb"], beta=weights["beta"], log_eps=weights["log_eps"])

    def metrics(self, batch: dict[str, Tensor]) -> dict[str, float]:
        raw, srgb = self.network(batch["srgb"])
        return {"psnr_raw": mean_psnr(raw, batch["raw"]), "psnr": mean_psnr(srgb, batch["srgb"])}


# --------------------------------------------------------------------------------------------------------
# AINDNet transfer learning on real pairs
# --------------------------------------------------------------------------------------------------------

class AindnetTransferTask(SrgbDenoiserMetrics, Task):
    """AINDNet fine-tuned on real pairs from the synthetic-stage checkpoint ``init``: ``scheme = "tf"`` updates
    the AINs, the estimator and the last conv (:func:`transfer_tf`), ``"rt"`` everything (:func:`transfer_rt`)."""

    model_name = "aindnet"

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        data, val = config["data"], config["val"]
        self.pairs = _open_pairs(data["pairs"], data["layout"], "data.pairs")
        self.validation_pairs = self.pairs
        if val["pairs"]:
            self.validation_pairs = _open_pairs(val["pairs"], val["layout"], "val.pairs")
        self.network = AINDNet(**self.model_kwargs)

    def load_init(self, path: str) -> None:
        super().load_init(path)
        (transfer_tf if self.config["scheme"] == "tf" else transfer_rt)(self.network)

    def dataset(self, length: int) -> PairPatches:
        return PairPatches(self.pairs, self.config["patch_size"], length=length, seed=self.config["seed"])

    def make_batch(self, items: dict[str, Tensor], offset: int) -> dict[str, Tensor]:
        return {key: value.to(self.device, non_blocking=True) for key, value in items.items()}

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        return aindnet_real_loss(module(batch["noisy"]), batch["clean"])

    def validation_batches(self) -> list[dict[str, Tensor]]:
        val = self.config["val"]
        count = min(val["count"], len(self.validation_pairs))
        crops = [{key: centre_crop(self.validation_pairs[i][key], val["patch_size"])[None].to(self.device)
                  for key in ("noisy", "clean")} for i in range(count)]
        return crops  # one pair per batch: real images may differ in size


def _open_pairs(root: str, layout: str, key: str) -> torch.utils.data.Dataset:
    """The sRGB pairs at ``root`` (``layout`` one of :data:`SRGB_PAIR_LAYOUTS` or ``"auto"``)."""
    from cycleisp_fast.data.datasets import detect_layout, open_pairs

    try:
        found = detect_layout(root) if layout == "auto" else layout
        if found not in SRGB_PAIR_LAYOUTS:
            raise ConfigError(f"config key {key!r}: {root!r} holds {found!r} data; AINDNet transfer needs sRGB "
                              f"noisy/clean pairs, layout one of {SRGB_PAIR_LAYOUTS}")
        pairs = open_pairs(root, found)
    except ConfigError:
        raise
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:
        raise ConfigError(f"config key {key!r}: {error}") from error
    if len(pairs) == 0:
        raise ConfigError(f"config key {key!r}: no pairs found in {root!r} (layout {found!r})")
    return pairs


TASK_CLASSES: dict[str, type[Task]] = {
    "denoise-srgb": DenoiseSrgbTask,
    "denoise-raw": DenoiseRawTask,
    "aindnet-synthetic": AindnetSyntheticTask,
    "aindnet-transfer": AindnetTransferTask,
    "rgb2raw": Rgb2RawTask,
    "raw2rgb": Raw2RgbTask,
    "cycleisp-joint": CycleIspJointTask,
}


def make_task(config: dict[str, Any], device: torch.device) -> Task:
    """The task of a resolved config, its data read and checked, its network built (on the CPU, from the global
    RNG: seed it first) and its ``init`` weights loaded."""
    task = TASK_CLASSES[config["task"]](config, device)
    if config["init"]:
        task.load_init(config["init"])
    return task
