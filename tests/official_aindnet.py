"""AINDNet's forward written out from the spec (``../shared/specs/aindnet.md`` §1-2) with plain PyTorch ops on
a module's weights, independently of :mod:`cycleisp_fast.models.aindnet`: the reference the AIN, AIN-ResBlock and
whole-network tests compare against. The TF1 legacy resize is written here again on purpose (index gathers and
explicit weights, not the package's lerp)."""

import torch
import torch.nn.functional as F


def tf_legacy_resize_bilinear(image, size):
    """TF 1.x ``resize_bilinear`` (align_corners=False, no half-pixel centres): ``src = dst * in / out``."""

    def axis(extent_in, extent_out):
        src = torch.arange(extent_out, dtype=torch.float64) * (extent_in / extent_out)
        low = src.floor().long()
        return low, (low + 1).clamp(max=extent_in - 1), (src - low).to(image.dtype)

    (y_low, y_high, y_frac), (x_low, x_high, x_frac) = axis(image.shape[-2], size[0]), axis(image.shape[-1], size[1])
    rows = image[..., y_low, :] * (1 - y_frac)[:, None] + image[..., y_high, :] * y_frac[:, None]
    return rows[..., x_low] * (1 - x_frac) + rows[..., x_high] * x_frac


def plain_resize(noise_map, size, mode):
    """The official code's legacy bilinear resize, or the paper's s x s average pooling written as a mean."""
    if mode == "subsample":
        return tf_legacy_resize_bilinear(noise_map, size)
    n, k, height, width = noise_map.shape
    s = height // size[0]
    return noise_map.reshape(n, k, size[0], s, size[1], s).mean(dim=(3, 5))


def plain_ain(ain, x, noise_map):
    """The official ``ain``: moments over H, W (biased variance), convs with 'same' padding, x_hat*(1+gamma)+beta."""
    hidden = F.relu(F.conv2d(plain_resize(noise_map, x.shape[-2:], ain.resize), ain.conv1.weight, ain.conv1.bias,
                             padding=2))
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


def plain_relu_conv(sequential, x):
    """``relu(conv3x3(x))`` with the weights of a ``Sequential(conv, ReLU)``."""
    conv = sequential[0]
    return F.relu(F.conv2d(x, conv.weight, conv.bias, padding=1))


def plain_estimator(estimator, noisy):
    """The official ``FCN_Avg``: 3x3 convs + ReLU, 4x4 then (scale 8) 2x2 average pools, conv to 3 + ReLU, TF1
    legacy resize back to full resolution, two 3 -> 3 convs + ReLU, 0.8 upsampled + 0.2 refined."""
    convs = [m for m in estimator.features if isinstance(m, torch.nn.Sequential)]
    x = plain_relu_conv(convs[1], plain_relu_conv(convs[0], noisy))
    x = F.avg_pool2d(x, 4)
    x = plain_relu_conv(convs[3], plain_relu_conv(convs[2], x))
    if estimator.coarse_scale == 8:
        x = F.avg_pool2d(x, 2)
    coarse = plain_relu_conv(convs[4], x)
    upsampled = tf_legacy_resize_bilinear(coarse, noisy.shape[-2:])
    refined = plain_relu_conv(estimator.refine[1], plain_relu_conv(estimator.refine[0], upsampled))
    return 0.8 * upsampled + 0.2 * refined, coarse


def plain_skip(block, x):
    """The official skip ``resBlock``: conv, ReLU, conv, + x."""
    hidden = F.relu(F.conv2d(x, block.conv1.weight, block.conv1.bias, padding=1))
    return x + F.conv2d(hidden, block.conv2.weight, block.conv2.bias, padding=1)


def plain_aindnet(model, noisy):
    """``AINDNet_recon(noisy, FCN_Avg(noisy)) + noisy`` for H and W multiples of 8: returns (denoised, noise
    map, coarse map)."""
    noise_map, coarse = plain_estimator(model.fcn_avg, noisy)

    def level(blocks, x):
        for block in blocks.blocks:
            x = plain_resblock(block, x, noise_map)
        return x

    conv1 = level(model.level1, plain_relu_conv(model.conv1_1, noisy))
    conv2 = level(model.level2, plain_relu_conv(model.conv2_1, F.avg_pool2d(conv1, 2)))
    conv3 = level(model.level3, plain_relu_conv(model.conv3_1, F.avg_pool2d(conv2, 2)))
    up4 = F.conv_transpose2d(conv3, model.up4.weight, stride=2) + plain_skip(model.skip4, conv2)
    conv4 = level(model.level4, up4)
    up5 = F.conv_transpose2d(conv4, model.up5.weight, stride=2) + plain_skip(model.skip5, conv1)
    conv5 = level(model.level5, up5)
    out = F.conv2d(conv5, model.conv6.weight, model.conv6.bias)
    return out + noisy, noise_map, coarse
