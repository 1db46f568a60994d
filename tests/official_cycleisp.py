"""CycleISP's official forward passes written out from a state dict with plain functional calls, following
the spec (``specs/cycleisp.md`` section 1): the independent truth that the modules are compared with."""

import torch
import torch.nn.functional as F


def prelu(weight):
    return lambda x: F.prelu(x, weight)


def conv(state, name, x):
    weight = state[f"{name}.weight"]
    return F.conv2d(x, weight, state.get(f"{name}.bias"), padding=weight.shape[-1] // 2)


def dab(state, prefix, x, act):
    res = conv(state, f"{prefix}body.2", act(conv(state, f"{prefix}body.0", x)))
    pooled = torch.cat((torch.max(res, 1)[0].unsqueeze(1), torch.mean(res, 1).unsqueeze(1)), dim=1)
    sa = res * torch.sigmoid(F.conv2d(pooled, state[f"{prefix}SA.spatial.conv.weight"], padding=1))
    hidden = F.relu(
        F.conv2d(
            F.adaptive_avg_pool2d(res, 1), state[f"{prefix}CA.conv_du.0.weight"], state[f"{prefix}CA.conv_du.0.bias"]
        )
    )
    ca = res * torch.sigmoid(
        F.conv2d(hidden, state[f"{prefix}CA.conv_du.2.weight"], state[f"{prefix}CA.conv_du.2.bias"])
    )
    out = F.conv2d(torch.cat([sa, ca], dim=1), state[f"{prefix}conv1x1.weight"], state[f"{prefix}conv1x1.bias"])
    out += x
    return out


def rrg(state, prefix, x, act, num_dab):
    res = x
    for i in range(num_dab):
        res = dab(state, f"{prefix}body.{i}.", res, act)
    res = conv(state, f"{prefix}body.{num_dab}", res)
    res += x
    return res


def trunk(state, x, act, num_rrg, num_dab):
    """body[:-1]: the RRGs and the conv (the act is body[-1])."""
    for i in range(num_rrg):
        x = rrg(state, f"body.{i}.", x, act, num_dab)
    return conv(state, f"body.{num_rrg}", x)


def mosaic(images):
    return torch.stack(
        (images[:, 0, 0::2, 0::2], images[:, 1, 0::2, 1::2], images[:, 1, 1::2, 0::2], images[:, 2, 1::2, 1::2]), dim=1
    )


def rgb2raw(state, x):
    act = prelu(state["body.4.weight"])
    return mosaic(conv(state, "tail.0", act(trunk(state, conv(state, "head.0", x), act, 3, 5))))


def ccm(state, x):
    act = prelu(state["body.3.weight"])
    x = F.conv2d(F.pad(x, (10, 10, 10, 10), mode="reflect"), state["blur.weight"], groups=3)
    x = F.max_pool2d(conv(state, "head.0", x), 2)
    return torch.sigmoid(conv(state, "tail.0", act(trunk(state, x, act, 2, 2))))


def raw2rgb(state, x, ccm_features):
    act = prelu(state["body.4.weight"])
    y = trunk(state, conv(state, "head.0", x), act, 3, 5)
    body_out = y.clone()
    y = y * ccm_features
    y = y + body_out
    y = conv(state, "tail_rgb.0", act(conv(state, "tail.0", act(y))))
    return F.pixel_shuffle(y, 2)


def denoise(state, noisy, variance=None):
    act = prelu(state["body.5.weight"])
    x = noisy if variance is None else torch.cat([noisy, variance], dim=1)
    return noisy + conv(state, "tail.0", act(trunk(state, conv(state, "head.0", x), act, 4, 8)))
