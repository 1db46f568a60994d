"""Functional API of the fused ops; each picks its backend per call (see :mod:`cycleisp_fast.backend`)."""

from cycleisp_fast.ops.ain import adaptive_instance_norm
from cycleisp_fast.ops.bayer import bayer_mosaic, bayer_pack, bayer_unpack, rgb_to_packed_bayer
from cycleisp_fast.ops.camera import camera_demosaic, camera_mosaic
from cycleisp_fast.ops.dual_attention import dual_attention
from cycleisp_fast.ops.noise import heteroscedastic_gaussian_noise, poisson_gaussian_noise
from cycleisp_fast.ops.physical_noise import physical_noise

__all__ = [
    "adaptive_instance_norm",
    "bayer_mosaic",
    "bayer_pack",
    "bayer_unpack",
    "camera_demosaic",
    "camera_mosaic",
    "dual_attention",
    "heteroscedastic_gaussian_noise",
    "physical_noise",
    "poisson_gaussian_noise",
    "rgb_to_packed_bayer",
]
