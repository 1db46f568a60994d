"""Drop-in ``nn.Module`` wrappers of the fused ops."""

from cycleisp_fast.nn.ain import AIN, AINResBlock
from cycleisp_fast.nn.bayer import BayerMosaic, BayerPack, BayerUnpack
from cycleisp_fast.nn.dual_attention import (
    DAB,
    RRG,
    BasicConv,
    ChannelAttention,
    ChannelPool,
    SpatialAttention,
    default_conv,
)

__all__ = [
    "AIN",
    "AINResBlock",
    "BasicConv",
    "BayerMosaic",
    "BayerPack",
    "BayerUnpack",
    "ChannelAttention",
    "ChannelPool",
    "DAB",
    "RRG",
    "SpatialAttention",
    "default_conv",
]
