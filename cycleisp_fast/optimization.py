"""The fastest way to run a network of this package: :func:`optimize`.

``optimize(model)`` returns a module to call in place of ``model``, with the same inputs, outputs and state-dict
keys, built from the levers that were measured to pay on the device (``cycleisp-fast bench --ops denoisenet_srgb
denoisenet_raw aindnet``; README, "Model speed"):

- every fused op on its fastest backend (``backend="auto"`` in every module that has a ``backend``);
- in float32 on the CPU, the 3x3 convolutions of 16 or more channels by Winograd F(4x4, 3x3)
  (:class:`cycleisp_fast.nn.WinogradConv2d`: 2.25 multiplies per output instead of 9, 1.6-2.4x faster than
  oneDNN's direct convolution at 32-256 channels; float rounding 3-8x direct convolution's, see
  :mod:`cycleisp_fast.ops.winograd`) for every network's inference and training step (forward, input and weight
  gradients);
- for an eager training step on the CPU, PReLUs that keep their output for the backward instead of their
  input (:class:`cycleisp_fast.nn.prelu.OutputSavingPReLU`: the next convolution keeps that output anyway, so
  each PReLU's input is freed; DenoiseNet's step peaks about 10 % lower);
- ``channels_last`` on the CPU for the CycleISP networks (the fused dual-attention tail reads it natively, and
  oneDNN's 3x3 convolutions run 1.3-2x faster in it) and for every network with Winograd (which reads and writes
  it, as the CPU AIN kernel does);
- ``torch.compile`` where it pays (AINDNet's inference on the CPU; everything on a GPU), for inference with
  inductor's freezing (the weights become constants: oneDNN prepacks them and fuses the activations and adds
  that follow the convolutions; our ops stay opaque registered ops), under ``torch.no_grad``; on a GPU also CUDA
  graphs (what ``mode="reduce-overhead"`` turns on: one replay
  per call instead of hundreds of kernel launches);
- optionally lower precision (``precision="bfloat16"`` or ``"float16"``): on the CPU the whole inference model
  runs in bfloat16 (worth it where the CPU has AVX-512 BF16 or AMX); on a GPU under ``torch.autocast``. The
  output always comes back in the input's dtype. The accuracy cost is stated in the README.

Levers that were measured and did *not* pay are left out and listed in the README (e.g. ``torch.compile`` of the
training step on the CPU).

The result of an inference ``optimize`` holds its own copy of the weights, compiled for the shapes it is called
with (a new input size compiles again, once): optimize after loading the weights, or load them through the
returned module (its :meth:`~OptimizedModel.load_state_dict` drops what was compiled). For training
(``inference=False``) the returned module shares the parameters and buffers of ``model``, so an optimizer over
either's ``parameters()`` trains both.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from cycleisp_fast.checks import check_choice
from cycleisp_fast.nn.prelu import use_output_saving_prelu
from cycleisp_fast.nn.winograd import use_winograd
from cycleisp_fast.ops import winograd as winograd_op

PRECISIONS = ("float32", "bfloat16", "float16")


def _uses_dual_attention(model: nn.Module) -> bool:
    from cycleisp_fast.nn import DAB

    return any(isinstance(module, DAB) for module in model.modules())


def _cpu_has_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _device_of(model: nn.Module) -> torch.device:
    tensor = next(model.parameters(), None)
    if tensor is None:
        tensor = next(model.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def _shared_copy(model: nn.Module) -> nn.Module:
    """A copy of the module tree that shares every parameter and buffer with ``model``."""
    memo: dict[int, Any] = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return copy.deepcopy(model, memo)


def _use_fused_backends(model: nn.Module) -> None:
    for module in model.modules():
        if getattr(module, "backend", None) is not None:
            module.backend = "auto"


def _to_channels_last(value: Any) -> Any:
    if isinstance(value, Tensor) and value.dim() == 4:
        return value.contiguous(memory_format=torch.channels_last)
    return value


def _cast_floats(value: Any, dtype: torch.dtype) -> Any:
    """``value`` with its floating tensors (also inside tuples and lists) cast to ``dtype``."""
    if isinstance(value, Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(_cast_floats(item, dtype) for item in value)
    return value


def _first_float_dtype(values: tuple[Any, ...]) -> torch.dtype | None:
    for value in values:
        if isinstance(value, Tensor) and value.is_floating_point():
            return value.dtype
    return None


class OptimizedModel(nn.Module):
    """What :func:`optimize` returns: the transformed model (``.module``) and how to run it.

    Call it as the original model. ``state_dict`` and ``load_state_dict`` are the original model's, with its
    keys (no ``module.`` prefix); loading drops the compiled graphs, so the next call compiles the new weights.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        inference: bool,
        channels_last: bool,
        winograd: bool = False,
        compile_options: Mapping[str, Any] | None,
        run_dtype: torch.dtype | None,
        autocast_dtype: torch.dtype | None,
    ):
        super().__init__()
        self.module = module
        self.inference = inference
        self.channels_last = channels_last
        self.winograd = winograd
        self.compile_options = dict(compile_options) if compile_options is not None else None
        self.run_dtype = run_dtype
        self.autocast_dtype = autocast_dtype
        self._compiled: Callable[..., Any] | None = None

    def _runner(self) -> Callable[..., Any]:
        if self.compile_options is None:
            return self.module
        if self._compiled is None:
            self._compiled = torch.compile(self.module, **self.compile_options)
        return self._compiled

    def _call(self, runner: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        device_type = _device_of(self.module).type
        grad = torch.no_grad() if self.inference else contextlib.nullcontext()
        autocast = (
            torch.autocast(device_type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with grad, autocast:
            return runner(*args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The model's output for the model's inputs, in the dtype of the first floating input."""
        out_dtype = _first_float_dtype(args + tuple(kwargs.values()))
        if self.channels_last:
            args = tuple(_to_channels_last(a) for a in args)
            kwargs = {key: _to_channels_last(value) for key, value in kwargs.items()}
        if self.run_dtype is not None:
            args, kwargs = (
                _cast_floats(args, self.run_dtype),
                {key: _cast_floats(value, self.run_dtype) for key, value in kwargs.items()},
            )
        runner = self._runner()
        if runner is self.module:
            output = self._call(runner, args, kwargs)
        else:
            try:
                output = self._call(runner, args, kwargs)
            except Exception as compile_error:
                # A user error (wrong shape...) raises the same in eager: re-raise eager's, keep compiling.
                try:
                    output = self._call(self.module, args, kwargs)
                except Exception as error:
                    raise error from None
                warnings.warn(
                    f"optimize: torch.compile failed ({type(compile_error).__name__}: "
                    f"{str(compile_error).partition(chr(10))[0]}); running the fused model eagerly instead",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.compile_options = None
                self._compiled = None
        return _cast_floats(output, out_dtype) if out_dtype is not None else output

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The original model's state dict, with its keys."""
        return self.module.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Loads into the original model's keys and drops the compiled graphs (recompiled at the next call)."""
        result = self.module.load_state_dict(state_dict, strict=strict, assign=assign)
        if self.run_dtype is not None:
            self.module.to(self.run_dtype)
        self._compiled = None
        torch.compiler.reset()
        return result

    def extra_repr(self) -> str:
        """The levers in use, shown by ``repr``."""
        dtype = self.run_dtype or self.autocast_dtype
        return (
            f"inference={self.inference}, channels_last={self.channels_last}, winograd={self.winograd}, "
            f"compile={self.compile_options}, precision={str(dtype or torch.float32).removeprefix('torch.')}"
        )


def compile_settings(inference: bool, device: torch.device) -> dict[str, Any]:
    """The ``torch.compile`` keyword arguments of :func:`optimize` (and of the benchmarks' ``compile`` provider,
    so that the reference model gets the same): static shapes; for inference inductor's freezing and, on a GPU,
    CUDA graphs (what ``mode="reduce-overhead"`` turns on; a mode and options do not combine)."""
    settings: dict[str, Any] = {"dynamic": False}
    if inference:
        settings["options"] = {"freezing": True, "triton.cudagraphs": device.type == "cuda"}
    return settings


def optimize(
    model: nn.Module,
    *,
    inference: bool = True,
    precision: str = "float32",
    compile: bool | None = None,
    channels_last: bool | None = None,
    winograd: bool | None = None,
) -> OptimizedModel:
    """The fastest way to run ``model``: a module to call in place of it (see the module docstring).

    Args:
        model: a network of this package (``DenoiseNet``, ``Rgb2Raw``, ``CCM``, ``Raw2Rgb``, ``AINDNet``) or any
            module built from :mod:`cycleisp_fast.nn` blocks, on the device it should run on.
        inference: True: a copy for inference (``eval()``, no gradients, frozen weights); False: for training,
            sharing ``model``'s parameters (put it in ``train()``/``eval()`` as usual).
        precision: ``"float32"`` (default: results within float rounding of the model), ``"bfloat16"`` or
            ``"float16"`` (GPU only), at the accuracy stated in the README; outputs keep the input's dtype.
        compile: ``torch.compile`` on or off; None (default) where it was measured to pay: on a GPU always; on the
            CPU for AINDNet's inference (inductor's freezing fuses the many small ops around its convolutions), not
            for the CycleISP networks (their fused model runs as fast eagerly) nor for training (no gain, minutes of
            compiling).
        channels_last: None (default) where it was measured to pay: on the CPU, the CycleISP networks and any
            network with Winograd convolutions.
        winograd: 3x3 convolutions by Winograd F(4x4, 3x3) where they have 16 or more channels, in float32 on the
            CPU; None (default): there (it was measured to pay for every network, inference and training), when
            the compiled extension is there. False keeps oneDNN's direct convolution (the
            reference's rounding).

    Returns:
        An :class:`OptimizedModel`.

    Example:
        >>> from cycleisp_fast.models import DenoiseNet
        >>> model = DenoiseNet(raw=False, n_feats=16, num_rrg=1, num_dab=1, reduction=4)
        >>> fast = optimize(model, compile=False)
        >>> x = torch.rand(1, 3, 16, 16)
        >>> with torch.no_grad():
        ...     torch.allclose(fast(x), model(x), atol=1e-5)
        True
        >>> list(fast.state_dict()) == list(model.state_dict())
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inference, bool):
        raise TypeError(f"inference must be True or False, got {inference!r}")
    precision = check_choice(precision, "precision", PRECISIONS)
    device = _device_of(model)
    if precision == "float16" and device.type != "cuda":
        raise ValueError("precision='float16' runs on a GPU only; on the CPU use 'bfloat16' or 'float32'")
    if compile is None:
        compile = device.type == "cuda" or (inference and not _uses_dual_attention(model))
    if precision == "bfloat16" and device.type == "cpu" and not _cpu_has_bfloat16():
        warnings.warn(
            "optimize: this CPU has no native bfloat16 arithmetic (AVX-512 BF16 or AMX), so precision='bfloat16' "
            "is likely slower than 'float32' here",
            RuntimeWarning,
            stacklevel=2,
        )
    winograd_fits = device.type == "cpu" and precision == "float32"
    if winograd is None:
        # Measured to pay for every network, inference and training step.
        winograd = winograd_fits and winograd_op.available()
    elif winograd and not winograd_fits:
        raise ValueError(
            f"winograd=True applies to float32 on the CPU; got precision={precision!r} with the model on {device}"
        )
    elif winograd and not winograd_op.available():
        raise RuntimeError("winograd=True needs the compiled extension (cycleisp_fast._C), which did not load")
    if channels_last is None:
        channels_last = device.type == "cpu" and (_uses_dual_attention(model) or winograd)

    if inference:
        module = copy.deepcopy(model).eval().requires_grad_(False)
    else:
        module = _shared_copy(model)
    _use_fused_backends(module)
    if winograd:
        use_winograd(module)
    if not inference and not compile and device.type == "cpu":
        use_output_saving_prelu(module)  # one activation fewer kept for the backward per PReLU
    if channels_last:
        module.to(memory_format=torch.channels_last)

    dtype = getattr(torch, precision)
    run_dtype = autocast_dtype = None
    if dtype != torch.float32:
        if inference and device.type == "cpu":
            run_dtype = dtype
            module.to(dtype)
        else:
            autocast_dtype = dtype
    return OptimizedModel(
        module,
        inference=inference,
        channels_last=channels_last,
        winograd=winograd,
        compile_options=compile_settings(inference, device) if compile else None,
        run_dtype=run_dtype,
        autocast_dtype=autocast_dtype,
    )
