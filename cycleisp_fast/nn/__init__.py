"""Drop-in ``nn.Module`` wrappers of the fused ops."""

from cycleisp_fast.nn.bayer import BayerMosaic, BayerPack, BayerUnpack

__all__ = ["BayerMosaic", "BayerPack", "BayerUnpack"]
