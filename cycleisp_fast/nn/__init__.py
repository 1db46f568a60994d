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
from cycleisp_fast.nn.prelu import OutputSavingPReLU, use_output_saving_prelu
from cycleisp_fast.nn.winograd import WinogradConv2d, use_winograd

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
    "OutputSavingPReLU",
    "RRG",
    "SpatialAttention",
    "WinogradConv2d",
    "default_conv",
    "use_output_saving_prelu",
    "use_winograd",
]
