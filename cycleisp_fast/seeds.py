"""Seeds and random streams in one table: the seed range, every salt that keeps one purpose's draws apart from
another's, and the keyed CPU generator that turns ``(seed, offset, stream)`` into a ``torch.Generator``.

A sample's draws are keyed by the run's ``seed`` and the sample's ``offset`` (its index); each purpose (noise
levels, camera parameters, crops) takes its own :class:`Stream`, so that ``(seed, offset)`` alone fix every draw
of a sample and no two purposes share one. The salts are fixed forever: changing one changes every dataset and
training run made with it.

Example::

    generator = keyed_generator(seed=0, offset=17, stream=Stream.CAMERA)
    torch.rand(3, generator=generator)  # the same three numbers on every machine
"""

from __future__ import annotations

import enum

import torch

MAX_SEED = 2**63
"""Seeds are ints in ``[0, MAX_SEED)`` (the seeded noise ops' range)."""
_MASK64 = (1 << 64) - 1


@enum.unique
class Stream(enum.IntEnum):
    """The salt of each purpose's generator (eight ASCII bytes each, for telling them apart in a debugger)."""

    LEVELS = 0x6E6F6973654C766C  # "noiseLvl": NoiseModel's noise levels
    CAMERA = 0x63616D6572615F70  # "camera_p": the unprocessing camera parameters of synthesis and training
    PATCH = 0x7061746368657321  # "patches!": CleanPatches' crops and flips
    PAIR = 0x7061697263726F70  # "paircrop": PairPatches' crops of real pairs
    RAW_SRGB = 0x7261777372676221  # "rawsrgb!": RawRgbPatches' crops and Bayer augmentations of RAW/sRGB pairs
    SHARD_ORDER = 0x7368617264732121  # "shards!!": SyntheticShards' order of the shards in each epoch
    SHARD_PATCH = 0x7368617264637574  # "shardcut": ShardPatches' samples and crops
    PHYSICAL = 0x706879736E6F6973  # "physnois": PhysicalNoiseModel's profiles, parameters and exposure ratios


VALIDATION_SEED_SALT = 0x76616C69646174
"""Training validates on ``seed ^ VALIDATION_SEED_SALT`` ("validat"): never the training draws."""


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def keyed_generator(seed: int, offset: int, stream: int) -> torch.Generator:
    """A CPU generator keyed by ``(seed, offset)`` and a purpose's ``stream`` salt (a :class:`Stream`)."""
    key = _splitmix64(_splitmix64((seed ^ int(stream)) & _MASK64) ^ (offset & _MASK64))
    return torch.Generator(device="cpu").manual_seed(key)
