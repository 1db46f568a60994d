"""The papers' networks, built from the fused :mod:`cycleisp_fast.nn` blocks."""

from cycleisp_fast.models.checkpoints import load_official, read_state_dict
from cycleisp_fast.models.cycleisp import CCM, DenoiseNet, Raw2Rgb, Rgb2Raw, gaussian_kernel

__all__ = ["CCM", "DenoiseNet", "Raw2Rgb", "Rgb2Raw", "gaussian_kernel", "load_official", "read_state_dict"]
