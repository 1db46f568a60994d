"""The ISP recipes: ``rgb2raw`` (RGB2RAW), ``raw2rgb`` (CCM + RAW2RGB) and ``cycleisp-joint`` (the three in the
cycle), on real RAW/sRGB pairs or on analytic ones.

- Real pairs, as the paper trains (MIT-Adobe FiveK): ``data.pairs`` names a folder made by ``cycleisp-fast prepare
  fivek`` (:mod:`cycleisp_fast.data.raw_rgb_pairs`); patches are cropped at even offsets with the official Bayer
  augmentations (:class:`~cycleisp_fast.data.raw_rgb_pairs.RawRgbPatches`), validated on centre crops of
  ``val.pairs`` (held-out prepared pairs) or of the training pairs.
- Analytic pairs, when ``data.pairs`` is empty: each clean sRGB patch paired with the packed RAW of Brooks et al.'s
  analytic inverse ISP under a random camera, a stand-in that runs without RAW data.

Runs write each network's weights in the official layout under the official names (:data:`ISP_FILE_NAMES`), which
``cycleisp-fast synth --pipeline cycleisp --weights RUN`` reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.data.raw_rgb_pairs import RawRgbPairs, RawRgbPatches, validation_crops
from cycleisp_fast.models import CCM, Raw2Rgb, Rgb2Raw, joint_loss, load_official, raw2rgb_loss, rgb2raw_loss
from cycleisp_fast.pipelines.unprocessing import random_camera_params, unprocess
from cycleisp_fast.seeds import Stream, keyed_generator
from cycleisp_fast.training.config import ConfigError
from cycleisp_fast.training.schema import patch_schedule
from cycleisp_fast.training.tasks.base import (
    ISP_FILE_NAMES,
    CleanImageTask,
    Task,
    mean_psnr,
    scheduled_patches,
    split_batch,
)


class IspTask(CleanImageTask):
    """Base of the ISP tasks: batches of ``srgb`` ``(N, 3, p, p)`` and ``raw`` ``(N, 4, p/2, p/2)`` patches, from the
    prepared real pairs of ``data.pairs``, or else each clean sRGB patch of ``data.images`` paired with its packed RAW
    through the analytic inverse ISP (:func:`unprocess`) under a random camera (keyed by ``(seed, offset)``)."""

    def __init__(self, config: dict[str, Any], device: torch.device):
        self.pairs = None
        if not config["data"]["pairs"]:
            super().__init__(config, device)
            return
        Task.__init__(self, config, device)
        largest = max(size for _, size in patch_schedule(config))
        self.pairs = _open_raw_rgb_pairs(config["data"]["pairs"], "data.pairs", largest + 2)
        self.validation_pairs = self.pairs
        if config["val"]["pairs"]:
            self.validation_pairs = _open_raw_rgb_pairs(config["val"]["pairs"], "val.pairs", 0)
        if config["val"]["count"]:
            count, size = config["val"]["count"], config["val"]["patch_size"]
            _check_pair_sizes(self.validation_pairs.metas[:count], size, "val.patch_size")

    def dataset(self, length: int) -> torch.utils.data.Dataset:
        """Training crops: of the real pairs (:class:`RawRgbPatches`, seeded) or of the clean images."""
        if self.pairs is None:
            return super().dataset(length)
        seed, raw_scale = self.config["seed"], self.config["data"]["raw_scale"]
        return scheduled_patches(
            lambda size: RawRgbPatches(self.pairs, size, length=length, seed=seed, raw_scale=raw_scale),
            self.config,
            length,
        )

    def make_batch(self, items: Any, offset: int) -> dict[str, Tensor]:
        """Real pairs: the collated ``srgb`` and ``raw`` patches moved to the device; else the analytic pairs of the
        clean patches under ``(seed, offset)``."""
        if self.pairs is None:
            return super().make_batch(items, offset)
        return {key: value.to(self.device, non_blocking=True) for key, value in items.items()}

    def validation_batches(self) -> list[dict[str, Tensor]]:
        """Real pairs: centre crops of the first ``val.count`` validation pairs, in chunks of ``batch_size``."""
        if self.pairs is None:
            return super().validation_batches()
        val = self.config["val"]
        if not val["count"]:
            return []
        crops = validation_crops(
            self.validation_pairs, val["count"], val["patch_size"], self.config["data"]["raw_scale"]
        )
        return split_batch({key: value.to(self.device) for key, value in crops.items()}, self.config["batch_size"])

    def make_pairs(self, clean: Tensor, seed: int, offset: int) -> dict[str, Tensor]:
        """``srgb``, the clean patches, and ``raw``, their packed ``(N, 4, p/2, p/2)`` RAW under random cameras."""
        camera = random_camera_params(
            clean.shape[0],
            generator=keyed_generator(seed, offset, Stream.CAMERA),
            device=clean.device,
            dtype=clean.dtype,
        )
        with torch.no_grad():
            return {"srgb": clean, "raw": unprocess(clean, camera)}

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """None: the ISP networks are built at their one official size."""
        return {}

    def extra_files(self) -> dict[str, dict[str, Tensor]]:
        """The state dict of each network of :attr:`network` under its official file name (:data:`ISP_FILE_NAMES`)."""
        return {ISP_FILE_NAMES[name]: module.state_dict() for name, module in self.network.named_children()}

    def load_init(self, path: str) -> None:
        """``init`` is a folder with the official-layout files of the networks this task trains."""
        if not Path(path).is_dir():
            raise ConfigError(
                f"config key 'init': for task {self.config['task']!r} it must be a folder holding "
                f"{', '.join(ISP_FILE_NAMES[n] for n, _ in self.network.named_children())}, got {path!r}"
            )
        for name, module in self.network.named_children():
            file = os.path.join(path, ISP_FILE_NAMES[name])
            try:
                load_official(module, file)
            except FileNotFoundError:
                raise ConfigError(f"config key 'init': {file} does not exist") from None
            except (ValueError, TypeError) as error:
                raise ConfigError(f"config key 'init': {file}: {error}") from error


def _check_pair_sizes(metas: list[dict[str, Any]], size: int, key: str) -> None:
    for meta in metas:
        height, width = meta["size"]
        if min(height, width) < size:
            raise ConfigError(
                f"prepared pair {meta['name']!r} is {width}x{height}, smaller than {key} = {size}: lower it or "
                "remove the pair"
            )


def _open_raw_rgb_pairs(root: str, key: str, smallest: int) -> RawRgbPairs:
    """The prepared pairs at ``root``, each at least ``smallest`` pixels on a side; ConfigError naming ``key``."""
    try:
        pairs = RawRgbPairs(root)
    except (FileNotFoundError, DataFileError) as error:
        raise ConfigError(f"config key {key!r}: {error}") from error
    if len(pairs) == 0:
        raise ConfigError(f"config key {key!r}: {root!r} holds no prepared pairs (meta/*.json)")
    _check_pair_sizes(pairs.metas, smallest, "patch_size + 2 (the Bayer augmentation's margin)")
    return pairs


class Rgb2RawNetworks(nn.Module):
    """RGB2RAW alone: sRGB ``(N, 3, H, W)`` -> packed RAW ``(N, 4, H/2, W/2)``."""

    def __init__(self):
        super().__init__()
        self.rgb2raw = Rgb2Raw()

    def forward(self, srgb: Tensor) -> Tensor:
        """RGB2RAW's packed RAW ``(N, 4, H/2, W/2)`` of ``srgb`` ``(N, 3, H, W)``."""
        return self.rgb2raw(srgb)


class Raw2RgbNetworks(nn.Module):
    """CCM + RAW2RGB: packed RAW ``(N, 4, h, w)`` guided by the sRGB ``(N, 3, 2h, 2w)`` -> sRGB. Raw2Rgb's unused
    ``conv1x1`` is frozen (it gets no gradient, which DDP would take for an error)."""

    def __init__(self):
        super().__init__()
        self.ccm, self.raw2rgb = CCM(), Raw2Rgb()
        self.raw2rgb.conv1x1.requires_grad_(False)

    def forward(self, raw: Tensor, srgb: Tensor) -> Tensor:
        """RAW2RGB's sRGB ``(N, 3, 2h, 2w)`` of ``raw`` ``(N, 4, h, w)``, guided by CCM of ``srgb``."""
        return self.raw2rgb(raw, self.ccm(srgb))


class CycleIspNetworks(nn.Module):
    """The joint cycle: sRGB -> RGB2RAW -> RAW2RGB (guided by CCM of the sRGB); returns ``(raw, srgb)``."""

    def __init__(self):
        super().__init__()
        self.rgb2raw, self.ccm, self.raw2rgb = Rgb2Raw(), CCM(), Raw2Rgb()
        self.raw2rgb.conv1x1.requires_grad_(False)

    def forward(self, srgb: Tensor) -> tuple[Tensor, Tensor]:
        """``(raw, srgb')``: RGB2RAW's ``(N, 4, H/2, W/2)`` of ``srgb`` and RAW2RGB's ``(N, 3, H, W)`` of that."""
        raw = self.rgb2raw(srgb)
        return raw, self.raw2rgb(raw, self.ccm(srgb))


class Rgb2RawTask(IspTask):
    """``rgb2raw``: RGB2RAW alone, trained to map the sRGB patches to their unprocessed packed RAW."""

    model_name = "cycleisp-rgb2raw"

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        self.network = Rgb2RawNetworks()

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """:func:`rgb2raw_loss` (L1 plus log-L1) between RGB2RAW(srgb) and raw."""
        return rgb2raw_loss(module(batch["srgb"]), batch["raw"], self.config["loss"]["log_eps"])

    def metrics(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """``psnr``: of RGB2RAW(srgb) against raw."""
        return {"psnr": mean_psnr(self.network(batch["srgb"]), batch["raw"])}


class Raw2RgbTask(IspTask):
    """``raw2rgb``: CCM + RAW2RGB, trained to develop the unprocessed packed RAW back to the sRGB patches."""

    model_name = "cycleisp-raw2rgb"

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        self.network = Raw2RgbNetworks()

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """L1 (:func:`raw2rgb_loss`) between RAW2RGB(raw, CCM(srgb)) and srgb."""
        return raw2rgb_loss(module(batch["raw"], batch["srgb"]), batch["srgb"])

    def metrics(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """``psnr``: of RAW2RGB(raw, CCM(srgb)) against srgb."""
        return {"psnr": mean_psnr(self.network(batch["raw"], batch["srgb"]), batch["srgb"])}


class CycleIspJointTask(IspTask):
    """``cycleisp-joint``: RGB2RAW, CCM and RAW2RGB trained together in the cycle sRGB -> RAW -> sRGB."""

    model_name = "cycleisp-isp"

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        self.network = CycleIspNetworks()

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """:func:`joint_loss`: ``beta`` times the RGB2RAW loss plus ``1 - beta`` times the RAW2RGB loss of the cycle."""
        raw, srgb = module(batch["srgb"])
        weights = self.config["loss"]
        return joint_loss(raw, batch["raw"], srgb, batch["srgb"], beta=weights["beta"], log_eps=weights["log_eps"])

    def metrics(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """``psnr_raw``: of the cycle's RAW against raw; ``psnr``: of its sRGB against srgb."""
        raw, srgb = self.network(batch["srgb"])
        return {"psnr_raw": mean_psnr(raw, batch["raw"]), "psnr": mean_psnr(srgb, batch["srgb"])}
