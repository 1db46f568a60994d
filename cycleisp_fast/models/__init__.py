"""The papers' networks, built from the fused :mod:`cycleisp_fast.nn` blocks."""

from cycleisp_fast.models.checkpoints import load_official, read_state_dict
from cycleisp_fast.models.cycleisp import CCM, DenoiseNet, Raw2Rgb, Rgb2Raw, gaussian_kernel
from cycleisp_fast.models.losses import joint_loss, raw2rgb_loss, rgb2raw_loss

__all__ = [
    "CCM", "DenoiseNet", "Raw2Rgb", "Rgb2Raw", "gaussian_kernel", "joint_loss", "load_official", "raw2rgb_loss",
    "read_state_dict", "rgb2raw_loss",
]
