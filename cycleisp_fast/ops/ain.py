"""Adaptive instance normalization (AINDNet's AIN) with pixel-wise scale and shift, fused.

``y = act((x - mu) / sqrt(var + eps) * (1 + gamma) + beta)``, mu and the biased var per (sample, channel)
over H x W, act a LeakyReLU when ``negative_slope`` is given (AINDNet applies LeakyReLU(0.02) after every
AIN). Registered operators: ``cycleisp_fast::ain_forward`` -> (out, mean, rstd) and
``cycleisp_fast::ain_backward`` -> (grad_x, grad_gamma, grad_beta) (native C++/CUDA), and their Triton
twins ``ain_forward_triton`` / ``ain_backward_triton``. The forward saves x, gamma, the per-plane mean and rstd,
and for the LeakyReLU's gate its output (for a slope >= 0 its sign is the pre-activation's; the output is
usually kept anyway, as the next convolution's input), or beta under ``torch.compile`` (inductor was seen to
overwrite a custom op's kept output in place when fusing the op that follows) and for negative slopes; the
backward recomputes x_hat from x. Double backward is not supported by the fused backends.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from cycleisp_fast._dtypes import accumulation_dtype
from cycleisp_fast.checks import check_tensor
from cycleisp_fast.ops.registration import FusedOp, Kernels, features_format, on_native
from cycleisp_fast.reference import ain as reference

OP_NAME = "ain_forward"


@torch.library.custom_op("cycleisp_fast::ain_forward_triton", mutates_args=())
def _ain_forward_triton(
    x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float, negative_slope: Optional[float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from cycleisp_fast.triton_kernels import ain as kernels

    return kernels.ain_forward(x.contiguous(), gamma.contiguous(), beta.contiguous(), eps, negative_slope)


@torch.library.custom_op("cycleisp_fast::ain_backward_triton", mutates_args=())
def _ain_backward_triton(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    gamma: torch.Tensor,
    gate: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    negative_slope: Optional[float],
    gate_is_output: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    from cycleisp_fast.triton_kernels import ain_backward as kernels

    if gate_is_output and negative_slope is not None and negative_slope < 0:
        raise RuntimeError(
            f"ain_backward: gate_is_output needs a slope >= 0 (the output's sign is then z's), got {negative_slope}"
        )
    return kernels.ain_backward(
        grad_out.contiguous(),
        x.contiguous(),
        gamma.contiguous(),
        gate.contiguous(),
        mean.contiguous(),
        rstd.contiguous(),
        negative_slope,
        gate_is_output,
    )


def _fake_forward(x, gamma, beta, eps, negative_slope, *, layouts=False):
    stats = x.new_empty(x.shape[:2], dtype=accumulation_dtype(x.dtype))
    return torch.empty_like(x, memory_format=features_format(x, layouts)), stats, torch.empty_like(stats)


def _fake_backward(grad_out, x, gamma, gate, mean, rstd, negative_slope, gate_is_output=False, *, layouts=False):
    return tuple(torch.empty_like(x, memory_format=features_format(x, layouts)) for _ in range(3))


def _setup_context(ctx, inputs, output):
    x, gamma, beta, _, ctx.negative_slope = inputs
    out, mean, rstd = output
    # The output as the LeakyReLU's gate (one tensor fewer kept: the next op usually keeps it), except under
    # torch.compile, whose inductor was seen to overwrite a kept output in place (wrong gradients), and for
    # negative slopes, where the output's sign is not z's.
    ctx.gate_is_output = not torch.compiler.is_compiling() and (ctx.negative_slope is None or ctx.negative_slope >= 0)
    ctx.save_for_backward(x, gamma, out if ctx.gate_is_output else beta, mean, rstd)
    ctx.mark_non_differentiable(mean, rstd)


def _make_backward(kernels: Kernels):
    def backward(ctx, grad_out, _grad_mean, _grad_rstd):
        x, gamma, gate, mean, rstd = ctx.saved_tensors
        # The gradient in x's layout (channels_last stays so on the CPU: the native kernels read it as it is).
        grad_out = grad_out.contiguous(memory_format=features_format(x, layouts=True))
        grad_x, grad_gamma, grad_beta = kernels.backward(
            grad_out, x, gamma, gate, mean, rstd, ctx.negative_slope, ctx.gate_is_output
        )
        return grad_x, grad_gamma, grad_beta, None, None

    return backward


AIN = FusedOp(
    OP_NAME,
    fake={"triton": _fake_forward, "native": on_native(_fake_forward)},
    setup_context=_setup_context,
    make_backward=_make_backward,
    backward="ain_backward",
    backward_fake={"triton": _fake_backward, "native": on_native(_fake_backward)},
)


def _check_like(value, name: str, x: torch.Tensor) -> None:
    check_tensor(value, name, shape_doc="(N, C, H, W) like x")
    if value.shape != x.shape:
        raise ValueError(f"{name} must have x's shape {tuple(x.shape)} (pixel-wise), got {tuple(value.shape)}")
    if value.dtype != x.dtype:
        raise TypeError(f"{name} must have x's dtype {x.dtype}, got {value.dtype}")
    if value.device != x.device:
        raise ValueError(f"{name} must be on x's device {x.device}, got {value.device}")


def adaptive_instance_norm(
    x: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    eps: float = 1e-5,
    negative_slope: float | None = None,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Instance-normalizes ``x`` and modulates it pixel-wise: ``x_hat * (1 + gamma) + beta``, then LeakyReLU.

    Args:
        x: ``(N, C, H, W)`` floating features.
        gamma: ``(N, C, H, W)`` pixel-wise scale, applied as ``1 + gamma``; x's dtype and device.
        beta: ``(N, C, H, W)`` pixel-wise shift; x's dtype and device.
        eps: added to the biased variance inside the square root (AINDNet: 1e-5).
        negative_slope: if given, a LeakyReLU with this slope is fused on the output (AINDNet: 0.02).
        backend: overrides the backend in force (see :mod:`cycleisp_fast.backend`).

    Returns:
        ``(N, C, H, W)`` of x's dtype. Statistics are computed in float32 (float64 for float64), stably when
        ``|mean| >> std``; an H x W = 1 plane (variance 0) gives ``beta`` (through the activation), no NaN.

    Shape:
        - x, gamma, beta: ``(N, C, H, W)``, no broadcasting (pass ``expand``-ed views for per-channel values)
        - output: ``(N, C, H, W)``

    Example:
        >>> x, gamma, beta = torch.randn(2, 8, 16, 16), torch.zeros(2, 8, 16, 16), torch.zeros(2, 8, 16, 16)
        >>> y = adaptive_instance_norm(x, gamma, beta)  # gamma = beta = 0: plain instance norm
        >>> torch.allclose(y, torch.nn.functional.instance_norm(x), atol=1e-5)
        True
        >>> adaptive_instance_norm(x, gamma, beta, negative_slope=0.02).shape
        torch.Size([2, 8, 16, 16])
    """
    check_tensor(x, "x", shape_doc="(N, C, H, W)")
    _check_like(gamma, "gamma", x)
    _check_like(beta, "beta", x)
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    if negative_slope is not None and not (isinstance(negative_slope, (int, float)) and math.isfinite(negative_slope)):
        raise ValueError(f"negative_slope must be None or a finite number, got {negative_slope!r}")
    eps = float(eps)
    negative_slope = None if negative_slope is None else float(negative_slope)
    impl = AIN.resolve(x.device.type, backend)
    if impl == "reference":
        return reference.adaptive_instance_norm(x, gamma, beta, eps, negative_slope)
    return AIN.kernel(impl)(x, gamma, beta, eps, negative_slope)[0]
