"""The denoisers trained on synthesised pairs: ``denoise-srgb`` and ``denoise-raw`` (CycleISP's ``DenoiseNet``, L1)
and ``aindnet-synthetic`` (AINDNet, L1 + the weighted asymmetric noise-map loss). The pairs are synthesised on the
fly from clean sRGB patches (:func:`make_synthesizer` of ``[data]`` and ``[noise]``), or, with ``data.shards``, are
crops of the pairs of webdataset shards regenerated exactly (:mod:`cycleisp_fast.pipelines.shards`).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from cycleisp_fast.data.files import DataFileError
from cycleisp_fast.models import AINDNet, DenoiseNet, aindnet_synthetic_loss
from cycleisp_fast.noise import PHYSICAL, make_noise_model
from cycleisp_fast.pipelines.shards import Regenerator, ShardPatches, ShardSamples, crop_pair
from cycleisp_fast.pipelines.synthesis import make_synthesizer
from cycleisp_fast.training.config import ConfigError
from cycleisp_fast.training.tasks.base import (
    ISP_FILE_NAMES,
    CleanImageTask,
    SrgbDenoiserMetrics,
    Task,
    mean_psnr,
    scheduled_patches,
    split_batch,
)


class SyntheticDenoiseTask(CleanImageTask):
    """Base of the denoisers trained on synthesised pairs (:func:`make_synthesizer` of ``[data]``/``[noise]``)."""

    noise_std = False

    def __init__(self, config: dict[str, Any], device: torch.device):
        data, noise = config["data"], config["noise"]
        weights = None
        if data["synthesizer"] == "cycleisp":
            weights = {name: os.path.join(data["isp_weights"], file) for name, file in ISP_FILE_NAMES.items()}
            missing = [path for path in weights.values() if not os.path.isfile(path)]
            if missing:
                raise ConfigError(
                    f"config key 'data.isp_weights': missing {', '.join(missing)} (the folder must hold "
                    f"{', '.join(ISP_FILE_NAMES.values())} in the official layout)"
                )
        self.shards = None
        if data["shards"]:
            Task.__init__(self, config, device)
            self.shards = _open_shards(data["shards"], config)
            self.regenerate = Regenerator(weights, noise_std=self.noise_std)  # in the DataLoader's processes
            return
        super().__init__(config, device)
        noise_model = make_noise_model(noise["levels"], noise["model"], ratio=physical_ratio(noise))
        self.synthesizer = make_synthesizer(
            data["synthesizer"], weights, noise=noise_model, noise_std=self.noise_std, device=device
        )

    def dataset(self, length: int) -> torch.utils.data.Dataset:
        """Clean crops (pairs made on the device), or with ``data.shards`` crops of the shards' regenerated pairs."""
        if self.shards is None:
            return super().dataset(length)
        return scheduled_patches(
            lambda size: ShardPatches(self.shards, self.regenerate, size, length=length, seed=self.config["seed"]),
            self.config,
            length,
        )

    def make_batch(self, items: Any, offset: int) -> dict[str, Tensor]:
        """Shards: the collated pairs moved to the device; else the pairs of the clean patches under ``offset``."""
        if self.shards is None:
            return super().make_batch(items, offset)
        return {key: value.to(self.device, non_blocking=True) for key, value in items.items()}

    def validation_batches(self) -> list[dict[str, Tensor]]:
        """Shards: centred crops of the first ``val.count`` samples' pairs (not held out), in chunks of
        ``batch_size``; else pairs of crops of the validation images."""
        if self.shards is None:
            return super().validation_batches()
        val = self.config["val"]
        crops = []
        for index in range(min(val["count"], len(self.shards))):
            try:
                crops.append(crop_pair(self.regenerate(self.shards[index]), val["patch_size"]))
            except DataFileError as error:
                raise ConfigError(f"config key 'val.patch_size': {error}") from error
        if not crops:
            return []
        batch = {key: torch.stack([crop[key] for crop in crops]).to(self.device) for key in crops[0]}
        return split_batch(batch, self.config["batch_size"])

    def make_pairs(self, clean: Tensor, seed: int, offset: int) -> dict[str, Tensor]:
        """The tensor fields of the synthesizer's :class:`SyntheticBatch` of ``clean`` (``clean``, ``noisy``, ...)."""
        with torch.no_grad():
            pairs = self.synthesizer(clean, seed=seed, offset=offset)
        return {name: value for name, value in pairs._asdict().items() if isinstance(value, Tensor)}


def _open_shards(urls: str, config: dict[str, Any]) -> ShardSamples:
    """The shard samples of ``data.shards``, checked against the config: the shards' synthesizer, noise levels and
    noise model must be the config's (ConfigError naming the keys)."""
    try:
        shards = ShardSamples(urls)
        meta = shards[0]["meta"]
    except (FileNotFoundError, DataFileError, ValueError) as error:
        raise ConfigError(f"config key 'data.shards': {error}") from error
    data, noise = config["data"], config["noise"]
    ours = {"data.synthesizer": data["synthesizer"], "noise.levels": noise["levels"], "noise.model": noise["model"]}
    theirs = {"data.synthesizer": meta["pipeline"], "noise.levels": meta["levels"], "noise.model": meta["noise"]}
    if physical_ratio(noise) is not None:
        ours["noise.ratio_min/max"] = list(physical_ratio(noise))
        theirs["noise.ratio_min/max"] = meta.get("ratio")
    differ = [f"{key} = {theirs[key]!r}" for key in ours if ours[key] != theirs[key]]
    if differ:
        raise ConfigError(
            f"config key 'data.shards': the shards were synthesised with {', '.join(differ)}; set the same in the "
            "config (the pairs are regenerated as the shards made them)"
        )
    return shards


class DenoiseSrgbTask(SrgbDenoiserMetrics, SyntheticDenoiseTask):
    """``denoise-srgb``: CycleISP's ``DenoiseNet(raw=False)`` on the synthesised sRGB pairs, L1 loss."""

    model_name = "cycleisp-srgb"

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        self.network = DenoiseNet(raw=False, **self.model_kwargs)

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """L1 between DenoiseNet(noisy) and clean, the sRGB images."""
        return torch.nn.functional.l1_loss(module(batch["noisy"]), batch["clean"])


class DenoiseRawTask(SyntheticDenoiseTask):
    """``denoise-raw``: CycleISP's ``DenoiseNet(raw=True)`` on the synthesised packed RAW pairs, L1 loss."""

    model_name = "cycleisp-raw"

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        self.network = DenoiseNet(raw=True, **self.model_kwargs)

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """L1 between DenoiseNet(noisy_raw, variance) and clean_raw."""
        return torch.nn.functional.l1_loss(module(batch["noisy_raw"], batch["variance"]), batch["clean_raw"])

    def metrics(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """``psnr_input`` of noisy_raw and ``psnr`` of DenoiseNet(noisy_raw, variance), against clean_raw."""
        denoised = self.network(batch["noisy_raw"], batch["variance"])
        return {
            "psnr_input": mean_psnr(batch["noisy_raw"], batch["clean_raw"]),
            "psnr": mean_psnr(denoised, batch["clean_raw"]),
        }


class AindnetSyntheticTask(SrgbDenoiserMetrics, SyntheticDenoiseTask):
    """``aindnet-synthetic``: AINDNet on the synthesised sRGB pairs, with their noise std maps as its targets."""

    model_name = "aindnet"
    noise_std = True

    def __init__(self, config: dict[str, Any], device: torch.device):
        super().__init__(config, device)
        self.network = AINDNet(**self.model_kwargs)

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """L1 of AINDNet(noisy) against clean plus ``noise_weight`` times the asymmetric loss of its noise maps."""
        denoised, noise_map, coarse = module(batch["noisy"], return_noise_map=True)
        weights = self.config["loss"]
        return aindnet_synthetic_loss(
            denoised,
            batch["clean"],
            noise_map,
            coarse,
            batch["noise_std"],
            lam=weights["noise_weight"],
            alpha=weights["asymmetry"],
        )


def physical_ratio(noise: dict[str, Any]) -> tuple[float, float] | None:
    """``(noise.ratio_min, noise.ratio_max)`` for physical noise, else None."""
    return (noise["ratio_min"], noise["ratio_max"]) if noise["model"] == PHYSICAL else None
