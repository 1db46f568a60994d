"""AINDNet's transfer stage (``aindnet-transfer``): the synthetic-stage network fine-tuned on real noisy/clean sRGB
pairs (:func:`cycleisp_fast.data.datasets.open_pairs`), on random aligned patches (:class:`PairPatches`), validated on
centre crops of held-out pairs or of the training pairs.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from cycleisp_fast.data.crops import centre_crop, random_crop
from cycleisp_fast.models import AINDNet, aindnet_real_loss, transfer_rt, transfer_tf
from cycleisp_fast.pipelines.synthesis import dihedral
from cycleisp_fast.seeds import Stream, keyed_generator
from cycleisp_fast.training.config import ConfigError
from cycleisp_fast.training.schema import SRGB_PAIR_LAYOUTS
from cycleisp_fast.training.tasks.base import SrgbDenoiserMetrics, Task


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
        k = min(int(draws[3] * 8), 7)
        return {key: dihedral(random_crop(pair[key], p, draws[1:3]), k).contiguous() for key in ("noisy", "clean")}


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
        """Loads the synthetic-stage weights at ``path``, then freezes what ``scheme`` does not train."""
        super().load_init(path)
        (transfer_tf if self.config["scheme"] == "tf" else transfer_rt)(self.network)

    def dataset(self, length: int) -> PairPatches:
        """``length`` random aligned ``(3, patch_size, patch_size)`` crops of the training pairs, seeded."""
        return PairPatches(self.pairs, self.config["patch_size"], length=length, seed=self.config["seed"])

    def make_batch(self, items: dict[str, Tensor], offset: int) -> dict[str, Tensor]:
        """The collated ``noisy`` and ``clean`` crops moved to the device (``offset`` is unused: the pairs are real)."""
        return {key: value.to(self.device, non_blocking=True) for key, value in items.items()}

    def loss(self, module: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """L1 between AINDNet(noisy) and clean (:func:`aindnet_real_loss`)."""
        return aindnet_real_loss(module(batch["noisy"]), batch["clean"])

    def validation_batches(self) -> list[dict[str, Tensor]]:
        """Centre crops (at most ``val.patch_size``) of the first ``val.count`` validation pairs, one per batch."""
        val = self.config["val"]
        count, size = min(val["count"], len(self.validation_pairs)), val["patch_size"]
        crops = [
            {
                key: centre_crop(self.validation_pairs[i][key], size, even_offsets=True)[None].to(self.device)
                for key in ("noisy", "clean")
            }
            for i in range(count)
        ]
        return crops  # one pair per batch: real images may differ in size


def _open_pairs(root: str, layout: str, key: str) -> torch.utils.data.Dataset:
    """The sRGB pairs at ``root`` (``layout`` one of :data:`SRGB_PAIR_LAYOUTS` or ``"auto"``)."""
    from cycleisp_fast.data.datasets import detect_layout, open_pairs

    try:
        found = detect_layout(root) if layout == "auto" else layout
        if found not in SRGB_PAIR_LAYOUTS:
            raise ConfigError(
                f"config key {key!r}: {root!r} holds {found!r} data; AINDNet transfer needs sRGB "
                f"noisy/clean pairs, layout one of {SRGB_PAIR_LAYOUTS}"
            )
        pairs = open_pairs(root, found)
    except ConfigError:
        raise
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:
        raise ConfigError(f"config key {key!r}: {error}") from error
    if len(pairs) == 0:
        raise ConfigError(f"config key {key!r}: no pairs found in {root!r} (layout {found!r})")
    return pairs
