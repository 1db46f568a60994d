"""Model-level cases: whole denoisers (the sRGB and RAW DenoiseNet, AINDNet).

The benchmarks time them as modules (:mod:`cycleisp_fast.bench.networks`: inference and a training step, with
:func:`cycleisp_fast.optimize` as one more provider); the selftest and the op tests check them through the
functional form here: the parameters come in as inputs (``torch.func.functional_call`` over a template per
backend that holds no data), so ``forward+backward`` is the gradient of every parameter. The RAW denoiser's
variance map is computed from the noisy input inside the call (``shot * noisy + read``,
:data:`RAW_SHOT`, :data:`RAW_READ`), so every case takes one image.

On the CPU the fused DenoiseNet runs **channels_last** (input and parameters): the fused dual-attention tail
reads and writes that layout natively, and oneDNN's 3x3 convolutions skip their layout reorders in it (1.56x
the reference forward against 1.43x in NCHW). AINDNet stays NCHW: channels_last made it slower (1.88 s
against 1.41 s forward at 256 x 256; its pools, transposed and 5x5 convs). The reference keeps the official
NCHW layout, as the official code runs.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from cycleisp_fast.cases import Case, Size, Variant
from cycleisp_fast.models import AINDNet, DenoiseNet
from cycleisp_fast.ops.ain import OP_NAME as AIN_OP
from cycleisp_fast.ops.dual_attention import OP_NAME as DUAL_ATTENTION_OP

RAW_SHOT, RAW_READ = 0.01, 1e-4
"""The shot and read noise levels of the RAW denoiser's variance map in the model cases."""


def model_inputs(image: Tensor, raw: bool) -> tuple[Tensor, ...]:
    """A model case's image -> the network's inputs: ``(image,)``, or ``(image, variance)`` for the RAW denoiser."""
    return (image, RAW_SHOT * image + RAW_READ) if raw else (image,)


class _Functional:
    """One model per backend, called with its parameters given as tensors (``named_parameters()`` order).

    ``build(backend)`` makes the network with the official initialisation; ``channels_last``: the fused model runs
    channels_last on the CPU; ``raw``: the network takes ``(noisy, variance)`` (:func:`model_inputs`).
    """

    def __init__(self, build: Callable[[str], nn.Module], channels_last: bool, raw: bool = False):
        self.build = build
        self.channels_last = channels_last
        self.raw = raw
        self.templates: dict[str, nn.Module] = {}
        self._names: list[str] | None = None

    def template(self, backend: str) -> nn.Module:
        if backend not in self.templates:
            self.templates[backend] = self.build(backend).eval()
        return self.templates[backend]

    def names(self) -> list[str]:
        if self._names is None:
            self._names = [name for name, _ in self.template("reference").named_parameters()]
        return self._names

    def shapes(self) -> list[torch.Size]:
        return [p.shape for p in self.template("reference").parameters()]

    def __call__(self, image: Tensor, *parameters: Tensor, backend: str | None = None) -> Tensor:
        backend = backend or "auto"
        if self.channels_last and backend != "reference" and image.device.type == "cpu":
            image = image.contiguous(memory_format=torch.channels_last)
            parameters = tuple(
                p.contiguous(memory_format=torch.channels_last) if p.dim() == 4 else p for p in parameters
            )
        model = self.template(backend)
        return torch.func.functional_call(model, dict(zip(self.names(), parameters)), model_inputs(image, self.raw))


def _reference(model: _Functional) -> Callable[..., Tensor]:
    def on_reference_backend(image: Tensor, *parameters: Tensor) -> Tensor:
        return model(image, *parameters, backend="reference")

    return on_reference_backend


def _inputs(model: _Functional) -> Callable[[Size, torch.dtype, torch.device, torch.Generator], tuple[Tensor, ...]]:
    def make_inputs(size: Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator):
        """An image uniform in [0, 1) of ``size`` and the parameters of a freshly initialised model (the
        official initialisation, seeded from ``generator``)."""
        image = torch.rand(size, dtype=dtype, device=device, generator=generator)
        seed = int(torch.randint(2**31, (1,), generator=generator, device=generator.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = model.build("reference")
        return (image,) + tuple(p.detach().to(device=device, dtype=dtype) for p in fresh.parameters())

    return make_inputs


def _conv_flops(model: _Functional) -> Callable[[tuple[Tensor, ...], Tensor, str], int]:
    """2 x the multiply-adds of every convolution (traced once per input size); the backward doubles them."""
    cache: dict[tuple[int, ...], int] = {}

    def flops(inputs, output: Tensor, mode: str) -> int:
        shape = tuple(inputs[0].shape)
        if shape not in cache:
            total = 0

            def count(module, args, result):
                nonlocal total
                weight = module.weight
                per_output = weight.shape[1] * weight.shape[2] * weight.shape[3]
                if isinstance(module, nn.ConvTranspose2d):
                    per_output = weight.shape[0] * weight.shape[2] * weight.shape[3] // 4  # stride 2
                total += 2 * per_output * result.numel()

            with torch.device("meta"):
                template = model.build("reference")
            hooks = [
                m.register_forward_hook(count)
                for m in template.modules()
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
            ]
            try:
                with torch.no_grad():
                    template(*model_inputs(torch.zeros(shape, device="meta"), model.raw))
            finally:
                for hook in hooks:
                    hook.remove()
            cache[shape] = total
        return cache[shape] if mode == "forward" else 3 * cache[shape]

    return flops


_DENOISENET = _Functional(lambda backend: DenoiseNet(raw=False, backend=backend), channels_last=True)
_DENOISENET_RAW = _Functional(lambda backend: DenoiseNet(raw=True, backend=backend), channels_last=True, raw=True)
_AINDNET = _Functional(lambda backend: AINDNet(backend=backend), channels_last=False)
_MODEL_VARIANTS = (Variant({}, exact=False, grad_tolerances={"rtol": 1e-5, "atol": 1e-5}),)
"""Whole networks, float rounding accumulated over 30+ blocks. AINDNet is checked in float64: in float32 its
gradients are ill-conditioned (an instance-normalised plane that a ReLU leaves near-constant has rstd up to
1/sqrt(eps) = 316, and the backends' different roundings flip a ReLU there: 0.17 seen on a conv bias whose
float32 reference is within 1e-5 of float64, while each op alone agrees to 1e-6)."""


def _case(name: str, kernel: str, model: _Functional, **extra) -> Case:
    """The case of one whole network: an sRGB image (default 1 x 3 x 256 x 256), or for the RAW denoiser a packed
    RGGB one (1 x 4 x 256 x 256: the same features, 64 x 256 x 256, as the sRGB denoiser)."""
    channels = 4 if model.raw else 3
    return Case(
        name=name,
        kernel=kernel,
        op=model,
        reference=_reference(model),
        make_inputs=_inputs(model),
        size_doc=f"N x {channels} x H x W ({'packed RGGB' if model.raw else 'sRGB'} image)",
        fits=lambda size: len(size) == 4 and size[1] == channels,
        default_sizes=((1, channels, 256, 256),),
        quick_sizes=((1, channels, 16, 16),),
        train_sizes={"cpu": (2, channels, 128, 128), "cuda": (16, channels, 128, 128)},
        network=model,
        variants=_MODEL_VARIANTS,
        dtype=torch.float32,
        flops=_conv_flops(model),
        opt_in=True,
        **extra,
    )


CASES = (
    _case("denoisenet_srgb", DUAL_ATTENTION_OP, _DENOISENET, selftest_sizes=((1, 3, 8, 12),)),
    _case("denoisenet_raw", DUAL_ATTENTION_OP, _DENOISENET_RAW, selftest_sizes=((1, 4, 6, 10),)),
    _case("aindnet", AIN_OP, _AINDNET, selftest_sizes=((1, 3, 16, 24),), selftest_dtype=torch.float64),
)
