"""The tail of CycleISP's Dual Attention Block, fused: ``conv1x1(cat([SA(res), CA(res)])) + x``.

The 1x1 projection splits into ``s_sa(p) * (W_a res(p)) + (W_b diag(s_ca)) res(p) + b + x(p)`` (see
``csrc/ops/dual_attention_math.h``), so the fused backends never store the two attention branches or their
concatenation. Registered operators: ``cycleisp_fast::dual_attention_forward`` -> (out, pool, argmax,
channel_mean) and ``cycleisp_fast::dual_attention_backward`` (native C++/CUDA), and their Triton twins
``dual_attention_forward_triton`` / ``dual_attention_backward_triton``. The forward saves only the (N, 2, H, W)
channel pool, the (N, H, W) int32 argmax of the channel max and the (N, C) channel means; the backward
recomputes both attention scales from them. Double backward is not supported by the fused backends.
"""

from __future__ import annotations

import torch

from cycleisp_fast._dtypes import accumulation_dtype
from cycleisp_fast.checks import check_tensor
from cycleisp_fast.ops.registration import FusedOp, Kernels, features_format, on_native
from cycleisp_fast.reference import dual_attention as reference

OP_NAME = "dual_attention_forward"
_WEIGHT_NAMES = ("sa_weight", "ca_w1", "ca_b1", "ca_w2", "ca_b2", "proj_w")

_Forward = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
_Backward = tuple[
    torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor
]


@torch.library.custom_op("cycleisp_fast::dual_attention_forward_triton", mutates_args=())
def _forward_triton(
    res: torch.Tensor,
    x: torch.Tensor,
    sa_weight: torch.Tensor,
    ca_w1: torch.Tensor,
    ca_b1: torch.Tensor,
    ca_w2: torch.Tensor,
    ca_b2: torch.Tensor,
    proj_w: torch.Tensor,
    proj_b: torch.Tensor,
) -> _Forward:
    from cycleisp_fast.triton_kernels import dual_attention as kernels

    return kernels.dual_attention_forward(res, x, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, proj_b)


@torch.library.custom_op("cycleisp_fast::dual_attention_backward_triton", mutates_args=())
def _backward_triton(
    grad_out: torch.Tensor,
    res: torch.Tensor,
    pool: torch.Tensor,
    argmax: torch.Tensor,
    channel_mean: torch.Tensor,
    sa_weight: torch.Tensor,
    ca_w1: torch.Tensor,
    ca_b1: torch.Tensor,
    ca_w2: torch.Tensor,
    ca_b2: torch.Tensor,
    proj_w: torch.Tensor,
) -> _Backward:
    from cycleisp_fast.triton_kernels import dual_attention_backward as kernels

    return kernels.dual_attention_backward(
        grad_out, res, pool, argmax, channel_mean, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w
    )


def _fake_forward(res, x, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, proj_b, *, layouts=False):
    n, c, h, w = res.shape
    acc = accumulation_dtype(res.dtype)
    return (
        torch.empty_like(res, memory_format=features_format(res, layouts)),
        res.new_empty((n, 2, h, w), dtype=acc),
        res.new_empty((n, h, w), dtype=torch.int32),
        res.new_empty((n, c), dtype=acc),
    )


def _fake_backward(
    grad_out, res, pool, argmax, channel_mean, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, *, layouts=False
):
    return (
        torch.empty_like(res, memory_format=features_format(res, layouts)),
        *(
            torch.empty_like(w, memory_format=torch.contiguous_format)
            for w in (sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w)
        ),
        proj_w.new_empty(proj_w.shape[:1]),
    )


def _make_backward(kernels: Kernels):
    def backward(ctx, grad_out, _grad_pool, _grad_argmax, _grad_mean):
        res, pool, argmax, channel_mean, *weights = ctx.saved_tensors
        grads = kernels.backward(grad_out, res, pool, argmax, channel_mean, *weights)
        return grads[0], grad_out, *grads[1:7], grads[7].to(ctx.proj_b_dtype)

    return backward


def _setup_context(ctx, inputs, output):
    res, _x, *weights, proj_b = inputs
    _, pool, argmax, channel_mean = output
    ctx.proj_b_dtype = proj_b.dtype
    ctx.save_for_backward(res, pool, argmax, channel_mean, *weights)
    ctx.mark_non_differentiable(pool, argmax, channel_mean)


DUAL_ATTENTION = FusedOp(
    OP_NAME,
    fake={"triton": _fake_forward, "native": on_native(_fake_forward)},
    setup_context=_setup_context,
    make_backward=_make_backward,
    backward="dual_attention_backward",
    backward_fake={"triton": _fake_backward, "native": on_native(_fake_backward)},
)


def _check_weight(value, name: str, shape: tuple[int, ...], res: torch.Tensor) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(
            f"{name} must have shape {shape} for res with {res.shape[1]} channels, got {tuple(value.shape)}"
        )
    if not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
    if value.device != res.device:
        raise ValueError(f"{name} must be on res's device {res.device}, got {value.device}")


def check_arguments(res, x, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, proj_b) -> None:
    """Raises a ``TypeError``/``ValueError`` naming the first argument of :func:`dual_attention` that is wrong."""
    check_tensor(res, "res", shape_doc="(N, C, H, W)")
    check_tensor(x, "x", shape_doc="(N, C, H, W) like res")
    if x.shape != res.shape or x.dtype != res.dtype or x.device != res.device:
        raise ValueError(
            f"x must have res's shape {tuple(res.shape)}, dtype {res.dtype} and device {res.device}, "
            f"got {tuple(x.shape)}, {x.dtype}, {x.device}"
        )
    if min(res.shape[1:]) < 1:
        raise ValueError(f"res must have at least one channel and one pixel, got shape {tuple(res.shape)}")
    channels = res.shape[1]
    if not isinstance(ca_w1, torch.Tensor) or ca_w1.dim() != 4 or ca_w1.shape[0] < 1:
        raise ValueError(f"ca_w1 must be a (C/r, C, 1, 1) tensor, got {getattr(ca_w1, 'shape', type(ca_w1).__name__)}")
    reduced = ca_w1.shape[0]
    shapes = {
        "sa_weight": (1, 2, 3, 3),
        "ca_w1": (reduced, channels, 1, 1),
        "ca_b1": (reduced,),
        "ca_w2": (channels, reduced, 1, 1),
        "ca_b2": (channels,),
        "proj_w": (channels, 2 * channels, 1, 1),
        "proj_b": (channels,),
    }
    values = dict(zip(_WEIGHT_NAMES + ("proj_b",), (sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, proj_b)))
    for name, shape in shapes.items():
        _check_weight(values[name], name, shape, res)


def dual_attention(
    res: torch.Tensor,
    x: torch.Tensor,
    sa_weight: torch.Tensor,
    ca_w1: torch.Tensor,
    ca_b1: torch.Tensor,
    ca_w2: torch.Tensor,
    ca_b2: torch.Tensor,
    proj_w: torch.Tensor,
    proj_b: torch.Tensor,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """CycleISP's DAB tail: ``conv1x1(cat([res * s_sa, res * s_ca], 1), proj_w, proj_b) + x``.

    Args:
        res: ``(N, C, H, W)`` floating features (the output of the DAB's body).
        x: ``(N, C, H, W)`` the DAB's input (the residual), res's dtype and device.
        sa_weight: ``(1, 2, 3, 3)`` the spatial-attention conv (on [max_c res, mean_c res], no bias).
        ca_w1: ``(C/r, C, 1, 1)`` the channel-attention MLP's first 1x1 conv (the reduction r is read from it).
        ca_b1: ``(C/r,)`` its bias.
        ca_w2: ``(C, C/r, 1, 1)`` the MLP's second 1x1 conv.
        ca_b2: ``(C,)`` its bias.
        proj_w: ``(C, 2C, 1, 1)`` the 1x1 projection (SA half first, CA half second).
        proj_b: ``(C,)`` its bias.
        backend: overrides the backend in force (see :mod:`cycleisp_fast.backend`).

    The weights are the official modules' parameters as stored (any floating dtype: the fused backends
    compute in float32, float64 for float64 features, and return each weight's gradient in its dtype).

    Returns:
        ``(N, C, H, W)`` of res's dtype.

    Shape:
        - res, x: ``(N, C, H, W)``, any memory format (channels_last stays channels_last)
        - output: ``(N, C, H, W)``

    Example:
        >>> C, r = 16, 4
        >>> res, x = torch.randn(2, C, 8, 8), torch.randn(2, C, 8, 8)
        >>> sa, w1, b1 = torch.randn(1, 2, 3, 3), torch.randn(C // r, C, 1, 1), torch.zeros(C // r)
        >>> w2, b2 = torch.randn(C, C // r, 1, 1), torch.zeros(C)
        >>> proj_w, proj_b = torch.zeros(C, 2 * C, 1, 1), torch.ones(C)
        >>> torch.equal(dual_attention(res, x, sa, w1, b1, w2, b2, proj_w, proj_b), x + 1)  # a zero projection
        True
    """
    check_arguments(res, x, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, proj_b)
    impl = DUAL_ATTENTION.resolve(res.device.type, backend)
    if impl == "reference":
        return reference.dual_attention(res, x, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, proj_b)
    return DUAL_ATTENTION.kernel(impl)(res, x, sa_weight, ca_w1, ca_b1, ca_w2, ca_b2, proj_w, proj_b)[0]
