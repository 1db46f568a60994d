"""Synthetic noise: seeded, batched noise-level samplers (:mod:`~cycleisp_fast.noise.levels`), the
:class:`NoiseModel` that draws noisy training pairs with them (:mod:`~cycleisp_fast.noise.model`), physics-based
RAW noise from camera profiles (:mod:`~cycleisp_fast.noise.physical`, :mod:`~cycleisp_fast.noise.profiles`), and the
RAW noise-level estimator that measures levels back from a noisy image (:mod:`~cycleisp_fast.noise.estimation`).

Example:
    >>> import torch
    >>> from cycleisp_fast.noise import NoiseModel
    >>> sample = NoiseModel("cycleisp_dnd", return_variance=True)(torch.full((2, 4, 8, 8), 0.5), seed=7)
    >>> sample.noisy.shape, sample.variance.shape, sample.shot.shape
    (torch.Size([2, 4, 8, 8]), torch.Size([2, 4, 8, 8]), torch.Size([2]))
"""

from cycleisp_fast.noise.estimation import estimate_raw_noise
from cycleisp_fast.noise.levels import (
    NOISE_LEVEL_SAMPLERS,
    NoiseLevels,
    cbdnet_log_uniform,
    cbdnet_uniform,
    cycleisp_dnd,
    cycleisp_sidd,
    sample_noise_levels,
    unprocessing,
)
from cycleisp_fast.noise.model import (
    NOISE_MODELS,
    PHYSICAL,
    VARIANCE_SOURCES,
    NoiseModel,
    NoisySample,
    make_noise_model,
)
from cycleisp_fast.noise.physical import PhysicalNoiseModel, PhysicalSample, tukey_lambda_variance
from cycleisp_fast.noise.profiles import CameraProfile, builtin_profiles, load_profile, virtual_cameras

__all__ = [
    "NoiseLevels",
    "NoisySample",
    "NoiseModel",
    "NOISE_LEVEL_SAMPLERS",
    "NOISE_MODELS",
    "PHYSICAL",
    "make_noise_model",
    "VARIANCE_SOURCES",
    "cycleisp_dnd",
    "cycleisp_sidd",
    "unprocessing",
    "cbdnet_uniform",
    "cbdnet_log_uniform",
    "sample_noise_levels",
    "estimate_raw_noise",
    "PhysicalNoiseModel",
    "PhysicalSample",
    "CameraProfile",
    "builtin_profiles",
    "load_profile",
    "virtual_cameras",
    "tukey_lambda_variance",
]
