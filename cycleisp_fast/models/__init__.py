"""The papers' networks, built from the fused :mod:`cycleisp_fast.nn` blocks."""

from cycleisp_fast.models.aindnet import AINDNet, NoiseEstimator, trainable_parameters, transfer_rt, transfer_tf
from cycleisp_fast.models.checkpoints import load_official, read_state_dict
from cycleisp_fast.models.cycleisp import CCM, DenoiseNet, Raw2Rgb, Rgb2Raw, gaussian_kernel
from cycleisp_fast.models.losses import (
    aindnet_real_loss,
    aindnet_synthetic_loss,
    asymmetric_noise_loss,
    joint_loss,
    multiscale_asymmetric_loss,
    raw2rgb_loss,
    rgb2raw_loss,
)

__all__ = [
    "AINDNet",
    "CCM",
    "DenoiseNet",
    "NoiseEstimator",
    "Raw2Rgb",
    "Rgb2Raw",
    "aindnet_real_loss",
    "aindnet_synthetic_loss",
    "asymmetric_noise_loss",
    "gaussian_kernel",
    "joint_loss",
    "load_official",
    "multiscale_asymmetric_loss",
    "raw2rgb_loss",
    "read_state_dict",
    "rgb2raw_loss",
    "trainable_parameters",
    "transfer_rt",
    "transfer_tf",
]
