"""AINDNet's AIN and AIN-ResBlock written out from the spec (``specs/aindnet.md`` §1-2) with plain PyTorch ops on
a module's weights, independently of :mod:`cycleisp_fast.nn.ain`: the reference the module tests compare against.
The TF1 legacy resize is written here again on purpose (numpy index arithmetic and explicit weights, not the
package's torch code and TF formula). The whole network is compared against the official TF graph itself
(:mod:`official_aindnet_tf`)."""

import numpy as np
import torch
import torch.nn.functional as F


def tf_legacy_resize_bilinear(image, size):
    """TF 1.x ``resize_bilinear`` (align_corners=False, no half-pixel centres): ``src = dst * in / out``, computed
    in float32 as TF's kernel does."""

    def axis(extent_in, extent_out):
        src = np.arange(extent_out, dtype=np.float32) * (np.float32(extent_in) / np.float32(extent_out))
        low = np.floor(src).astype(np.int64)
        frac = torch.from_numpy(src - low.astype(np.float32)).to(image.dtype)
        return torch.from_numpy(low), torch.from_numpy(np.minimum(low + 1, extent_in - 1)), frac

    (y_low, y_high, y_frac), (x_low, x_high, x_frac) = axis(image.shape[-2], size[0]), axis(image.shape[-1], size[1])
    rows = image[..., y_low, :] * (1 - y_frac)[:, None] + image[..., y_high, :] * y_frac[:, None]
    return rows[..., x_low] * (1 - x_frac) + rows[..., x_high] * x_frac


def plain_resize(noise_map, size, mode):
    """The official code's legacy bilinear resize, or the paper's s x s average pooling written as a mean."""
    if mode == "tf_legacy":
        return tf_legacy_resize_bilinear(noise_map, size)
    n, k, height, width = noise_map.shape
    s = height // size[0]
    return noise_map.reshape(n, k, size[0], s, size[1], s).mean(dim=(3, 5))


def plain_ain(ain, x, noise_map):
    """The official ``ain``: moments over H, W (biased variance), convs with 'same' padding, x_hat*(1+gamma)+beta."""
    hidden = F.relu(
        F.conv2d(plain_resize(noise_map, x.shape[-2:], ain.resize), ain.conv1.weight, ain.conv1.bias, padding=2)
    )
    gamma = F.conv2d(hidden, ain.conv_gamma.weight, ain.conv_gamma.bias, padding=1)
    beta = F.conv2d(hidden, ain.conv_beta.weight, ain.conv_beta.bias, padding=1)
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(2, 3), keepdim=True)
    out = (x - mean) / torch.sqrt(var + ain.eps) * (1 + gamma) + beta
    return out if ain.negative_slope is None else torch.where(out >= 0, out, ain.negative_slope * out)


def plain_resblock(block, x, noise_map):
    """The official ``ain_resblock``: AIN, LeakyReLU(0.02), conv, AIN, LeakyReLU(0.02), conv, + x."""
    out = F.conv2d(plain_ain(block.ain_1, x, noise_map), block.conv1.weight, block.conv1.bias, padding=1)
    return x + F.conv2d(plain_ain(block.ain_2, out, noise_map), block.conv2.weight, block.conv2.bias, padding=1)
