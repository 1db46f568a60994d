"""Seeded, fused physics-based RAW noise (ELD / LED / PMN): shot, Gaussian or Tukey-lambda read, row,
quantisation noise and colour bias in one pass, with per-image parameters.

One registered operator, ``cycleisp_fast::physical_noise(x, params, bias, row_phase, seed, offset, components,
clip_min, clip_max)`` (native C++/CUDA), and its Triton twin ``physical_noise_triton``. Every backend draws from
the Philox streams of ``csrc/ops/physical_noise_math.h`` (its header comment is the formula and the stream
layout): the same ``(seed, offset)`` gives the same noise on every backend; the Poisson counts are the same
integers and the rest agrees with the reference to float32 rounding.

Gradients: identity for x (the mean's gradient through the Poisson part, as :func:`poisson_gaussian_noise`),
pathwise for the read, row and quantisation scales (the unit noises are drawn again from the seed, nothing is
saved) and the colour bias; the gain, the scale and the Tukey shape are constants to autograd (no gradient).
Elements that end at a clip bound get no gradient.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch

from cycleisp_fast._dtypes import accumulation_dtype
from cycleisp_fast.ops.noise import _check_offset, _check_seed, _unclipped, check_clip
from cycleisp_fast.ops.registration import FusedOp, Kernels
from cycleisp_fast.reference import physical_noise as reference
from cycleisp_fast.reference.bayer import cfa_sites
from cycleisp_fast.reference.noise import clip as clip_noise

OP_NAME = "physical_noise"
COMPONENT_LETTERS = "pgtrqc"
MAX_TUKEY_SHAPE = 1.0
"""|lambda| allowed for the Tukey-lambda read noise (ELD's calibrated cameras span -0.25 .. 0.2)."""


@torch.library.custom_op("cycleisp_fast::physical_noise_triton", mutates_args=())
def _physical_noise_triton(
    x: torch.Tensor,
    params: torch.Tensor,
    bias: torch.Tensor,
    row_phase: list[int],
    seed: int,
    offset: int,
    components: int,
    clip_min: Optional[float],
    clip_max: Optional[float],
) -> torch.Tensor:
    from cycleisp_fast.triton_kernels import physical_noise as kernels

    return kernels.physical_noise(
        x.contiguous(), params.contiguous(), bias.contiguous(), row_phase, seed, offset, components, clip_min, clip_max
    )


def _fake(x, params, bias, row_phase, seed, offset, components, clip_min, clip_max):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    x, params, bias, ctx.row_phase, ctx.seed, ctx.offset, ctx.components, ctx.clip_min, ctx.clip_max = inputs
    ctx.x_dtype = x.dtype
    clipped = ctx.clip_min is not None or ctx.clip_max is not None
    ctx.save_for_backward(x if clipped else None, params, bias, output if clipped else None)


def _unit_noise(kernels: Kernels, ctx, shape, params, bias, component: int, column: int) -> torch.Tensor:
    """One noise part alone at unit scale (``d y / d column`` times the scale), drawn again from the seed."""
    unit = params.clone()
    unit[:, reference.SCALE] = 1.0
    unit[:, column] = 1.0
    zeros = torch.zeros(shape, dtype=params.dtype, device=params.device)
    return kernels.forward(zeros, unit, bias, ctx.row_phase, ctx.seed, ctx.offset, component, None, None)


def _make_backward(kernels: Kernels):
    def backward(ctx, grad):
        x, params, bias, y = ctx.saved_tensors
        acc = params.dtype
        g = grad.to(acc)
        if y is not None:
            if y.dtype != acc:  # a 16-bit output rounded onto a bound hides whether it was clipped
                y = kernels.forward(
                    x.to(acc), params, bias, ctx.row_phase, ctx.seed, ctx.offset, ctx.components, None, None
                )
            g = torch.where(_unclipped(y, ctx.clip_min, ctx.clip_max), g, 0.0)
        grad_params = grad_bias = None
        scale = params[:, reference.SCALE].view(-1, 1, 1, 1)
        if ctx.needs_input_grad[1]:
            grad_params = torch.zeros_like(params)
            parts = (
                (reference.GAUSSIAN_READ | reference.TUKEY_READ, reference.READ_SCALE),
                (reference.ROW, reference.ROW_SCALE),
                (reference.QUANTIZATION, reference.QUANT_STEP),
            )
            for bits, column in parts:
                if ctx.components & bits:
                    unit = _unit_noise(kernels, ctx, g.shape, params, bias, ctx.components & bits, column)
                    grad_params[:, column] = (g * unit / scale).sum(dim=(1, 2, 3))
        if ctx.needs_input_grad[2]:
            grad_bias = torch.zeros_like(bias)
            if ctx.components & reference.COLOR_BIAS:
                grad_bias = (g / scale).sum(dim=(2, 3))
        return g.to(ctx.x_dtype), grad_params, grad_bias, None, None, None, None, None, None

    return backward


PHYSICAL_NOISE = FusedOp(OP_NAME, fake=_fake, setup_context=_setup_context, make_backward=_make_backward)


def parse_components(components) -> int:
    """LED's letters (a string of ``p g t r q c``, e.g. ``"ptrqc"``) as the op's component bits."""
    if not isinstance(components, str):
        raise TypeError(f"components must be a string of the letters {COMPONENT_LETTERS!r}, got {components!r}")
    unknown = sorted(set(components) - set(COMPONENT_LETTERS))
    if unknown:
        raise ValueError(
            f"components {components!r} has unknown letters {unknown}: use p (shot), g (Gaussian read), "
            "t (Tukey-lambda read), r (row), q (quantisation), c (colour bias)"
        )
    if "g" in components and "t" in components:
        raise ValueError(f"components {components!r}: the read noise is Gaussian (g) or Tukey-lambda (t), not both")
    bits = 0
    for letter in components:
        bits |= reference.COMPONENT_LETTERS[letter]
    return bits


def _per_image(value, name: str, n: int, acc: torch.dtype, low: float, high: float = math.inf, low_open=False):
    """A per-image parameter as an ``(N,)`` tensor of the compute dtype, checked to lie in its range."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a float or a tensor of shape (), (N,) or (N, 1); got {type(value).__name__}")
    t = torch.as_tensor(value, dtype=acc) if not isinstance(value, torch.Tensor) else value
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.dim() > 1 or (t.dim() == 1 and t.shape[0] not in (1, n)):
        raise ValueError(f"{name} must have shape (), (N,) or (N, 1) with N = {n}; got {tuple(t.shape)}")
    t = t.to(acc).reshape(-1).expand(n)
    if t.device.type == "cpu" and not torch.compiler.is_compiling() and t.numel():
        lo_ok = (t > low) if low_open else (t >= low)
        if not bool((torch.isfinite(t) & lo_ok & (t <= high)).all()):
            bound = f"> {low}" if low_open else f">= {low}"
            span = f"in [{low}, {high}]" if high != math.inf else f"finite and {bound}"
            raise ValueError(f"{name} must be {span}, got {t.detach().flatten()[:8].tolist()}")
    return t


def _bias_planes(bias, n: int, c: int, acc: torch.dtype) -> torch.Tensor:
    if isinstance(bias, bool) or not isinstance(bias, (numbers.Real, torch.Tensor)):
        raise TypeError(f"bias must be a float or a tensor of shape (), (N,), (N, 1), (1, C) or (N, C); got {bias!r}")
    t = torch.as_tensor(bias, dtype=acc) if not isinstance(bias, torch.Tensor) else bias
    if not t.is_floating_point():
        raise TypeError(f"bias must be a floating tensor, got {t.dtype}")
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() > 2 or (t.dim() == 2 and (t.shape[0] not in (1, n) or t.shape[1] not in (1, c))):
        raise ValueError(f"bias must have shape (), (N,), (N, 1), (1, C) or (N, C) = ({n}, {c}); got {tuple(t.shape)}")
    t = t.to(acc).reshape(t.shape if t.dim() == 2 else (1, 1)).expand(n, c)
    if t.device.type == "cpu" and not torch.compiler.is_compiling() and not bool(torch.isfinite(t).all()):
        raise ValueError("bias must be finite")
    return t


def row_phases(bayer_pattern: Optional[str], channels: int) -> list[int]:
    """The row of each packed plane (R, Gr, Gb, B) in the 2x2 block of ``bayer_pattern`` (empty for None: the rows
    of a mosaic or planar image, shared by its channels)."""
    if bayer_pattern is None:
        return []
    from cycleisp_fast.ops.bayer import PATTERNS

    if bayer_pattern not in PATTERNS:
        raise ValueError(f"bayer_pattern must be one of {PATTERNS} or None, got {bayer_pattern!r}")
    if channels != 4:
        raise ValueError(f"bayer_pattern needs packed Bayer planes (N, 4, H, W), got {channels} channels")
    return [dy for dy, _ in cfa_sites(bayer_pattern)]


def physical_noise(
    x: torch.Tensor,
    gain,
    *,
    scale=1.0,
    read_scale=0.0,
    read_shape=0.0,
    row_scale=0.0,
    quant_step=1.0,
    bias=0.0,
    components: str = "ptrqc",
    bayer_pattern: Optional[str] = None,
    dark_shading: Optional[torch.Tensor] = None,
    seed: Optional[int] = None,
    offset: int = 0,
    generator: Optional[torch.Generator] = None,
    clip=None,
    backend: Optional[str] = None,
) -> torch.Tensor:
    """Physics-based RAW noise ``D = K (I + N_p) + N_read + N_row + N_q + bias`` (ELD, Wei et al. 2020; LED 2023),
    in raw DN, applied to a clean image in the units of x: ``y = D(scale * x) / scale``.

    Per element of x: the signal ``scale * x`` (DN above black: ``scale = (white - black) / ratio`` turns a clean
    image in [0, 1] into an image ``ratio`` times darker), ``p``: ``K * Poisson(signal / K)`` (exact; K = 0 is the
    noiseless limit), ``g``: ``+ read_scale * N(0, 1)`` or ``t``: ``+ read_scale * TukeyLambda(read_shape)``,
    ``r``: ``+ row_scale * N(0, 1)`` drawn once per sensor row, ``q``: ``+ quant_step * U(-1/2, 1/2)``, ``c``:
    ``+ bias`` per channel; the sum divided by ``scale`` again (so y is x's units, multiplied back by the ratio),
    then ``clip``. Parameters are per image; the letters of ``components`` switch the parts (LED's spelling).

    Args:
        x: the clean image ``(N, C, H, W)``, any floating dtype (computed in float32, float64 for float64 x):
            a mosaic ``(N, 1, H, W)``, packed Bayer planes ``(N, 4, H/2, W/2)`` in (R, Gr, Gb, B) order with
            ``bayer_pattern`` set, or any planar image.
        gain: K, the system gain in DN per electron, >= 0: a float or a tensor ``()``, ``(N,)`` or ``(N, 1)``.
        scale: DN per unit of x (> 0), per image like ``gain``.
        read_scale: sigma of the read noise in DN (>= 0).
        read_shape: the Tukey lambda of ``t`` (|lambda| <= 1; 0 is the logistic distribution).
        row_scale: sigma of the row noise in DN (>= 0).
        quant_step: the ADC step in DN (>= 0).
        bias: the colour bias in DN: a float or a tensor ``()``, ``(N,)``, ``(N, 1)``, ``(1, C)`` or ``(N, C)``.
        components: letters of ``p g t r q c`` (``g`` and ``t`` exclusive), e.g. ``"ptrqc"`` (ELD/LED), ``"pg"``.
        bayer_pattern: for packed planes, the CFA they came from (``"RGGB"``, ...), so that the two planes of a
            sensor row share its row offset; None: one offset per row of x shared by its channels.
        dark_shading: PMN's fixed-pattern dark frame in DN, a tensor broadcastable to x (e.g. ``(N, C, H, W)``),
            added before the clip (one tensor op after the fused kernel: it is deterministic); None: none.
        seed: the Philox key in [0, 2^63); None draws one from ``generator`` (or torch's default generator).
        offset: the stream in [0, 2^32), e.g. one per image or worker.
        generator: where ``seed=None`` draws the seed from.
        clip: None or ``(min, max)`` in x's units (e.g. ``(None, 1)`` for the white level).
        backend: overrides the backend in force.

    Returns:
        The noisy image, x's dtype and shape, contiguous.

    Shape:
        - x: ``(N, C, H, W)``; gain, scale, read_scale, read_shape, row_scale, quant_step: ``()``, ``(N,)`` or
          ``(N, 1)``; bias: ``()``, ``(N,)``, ``(N, 1)``, ``(1, C)`` or ``(N, C)``
        - output: ``(N, C, H, W)``

    Example:
        >>> clean = torch.full((2, 4, 64, 64), 0.01)
        >>> noisy = physical_noise(clean, torch.tensor([1.0, 4.0]), scale=15583 / 100, read_scale=2.0,
        ...                        read_shape=-0.1, row_scale=0.5, components="ptrq", bayer_pattern="RGGB", seed=0)
        >>> torch.equal(noisy, physical_noise(clean, torch.tensor([1.0, 4.0]), scale=15583 / 100, read_scale=2.0,
        ...                        read_shape=-0.1, row_scale=0.5, components="ptrq", bayer_pattern="RGGB", seed=0))
        True
        >>> [round(float(v), 2) for v in noisy.mean(dim=(1, 2, 3))]  # the clean mean, per image
        [0.01, 0.01]
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor (the clean image), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must have a floating dtype, got {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {tuple(x.shape)}")
    bits = parse_components(components)
    n, c = x.shape[:2]
    acc = accumulation_dtype(x.dtype)
    columns = [
        _per_image(gain, "gain", n, acc, 0.0),
        _per_image(scale, "scale", n, acc, 0.0, low_open=True),
        _per_image(read_scale, "read_scale", n, acc, 0.0),
        _per_image(read_shape, "read_shape", n, acc, -MAX_TUKEY_SHAPE, MAX_TUKEY_SHAPE),
        _per_image(row_scale, "row_scale", n, acc, 0.0),
        _per_image(quant_step, "quant_step", n, acc, 0.0),
    ]
    params = torch.stack([t.to(x.device) for t in columns], dim=1)
    bias_planes = _bias_planes(bias, n, c, acc).to(x.device).contiguous()
    phases = row_phases(bayer_pattern, c)
    seed = _check_seed(seed, generator)
    offset = _check_offset(offset)
    clip_min, clip_max = check_clip(clip)
    impl = PHYSICAL_NOISE.resolve(x.device.type, backend)
    if x.numel() == 0:
        return (x * 0).contiguous()
    shading = _check_dark_shading(dark_shading, x)
    if shading is not None:  # the clip comes after the shading
        clip_min, clip_max, bounds = None, None, (clip_min, clip_max)
    if impl == "reference":
        y = reference.physical_noise(x, params, bias_planes, phases, seed, offset, bits, clip_min, clip_max)
    else:
        y = PHYSICAL_NOISE.kernel(impl)(x, params, bias_planes, phases, seed, offset, bits, clip_min, clip_max)
    if shading is None:
        return y
    scale_view = params[:, reference.SCALE].view(-1, 1, 1, 1)
    y = (y.to(params.dtype) + shading.to(params.dtype) / scale_view).to(x.dtype)
    return clip_noise(y, *bounds)


def _check_dark_shading(dark_shading, x: torch.Tensor) -> Optional[torch.Tensor]:
    if dark_shading is None:
        return None
    if not isinstance(dark_shading, torch.Tensor) or not dark_shading.is_floating_point():
        raise TypeError(f"dark_shading must be a floating tensor (DN) or None, got {type(dark_shading).__name__}")
    try:
        torch.broadcast_shapes(dark_shading.shape, x.shape)
    except RuntimeError:
        raise ValueError(
            f"dark_shading of shape {tuple(dark_shading.shape)} does not broadcast to x's {tuple(x.shape)}"
        ) from None
    if torch.broadcast_shapes(dark_shading.shape, x.shape) != x.shape:
        raise ValueError(f"dark_shading of shape {tuple(dark_shading.shape)} would grow x's {tuple(x.shape)}")
    return dark_shading.to(x.device)
