"""Drop-in ``nn.Module`` wrappers of the fused ops."""

from cycleisp_fast.nn.ain import AIN, AINResBlock
from cycleisp_fast.nn.bayer import BayerMosaic, BayerPack, BayerUnpack

__all__ = ["AIN", "AINResBlock", "BayerMosaic", "BayerPack", "BayerUnpack"]
