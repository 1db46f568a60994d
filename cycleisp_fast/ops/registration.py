"""One registration for every fused op: its operators per backend, their fake kernels, their autograd formula
and the backend pick of a call.

A fused op ``foo`` has a native operator ``cycleisp_fast::foo`` (C++/CUDA, registered by ``cycleisp_fast._C``
when the extension loaded) and a Triton twin ``cycleisp_fast::foo_triton`` (a ``torch.library.custom_op``
defined beside the op), each optionally with a backward operator (``foo_backward`` and its twin). Its module
writes the kernels and one :class:`FusedOp`, which registers for both backends

- the fake (meta) kernels, so ``torch.compile``, ``torch.export`` and FakeTensor propagation see the shapes;
- the autograd formula, built per backend by ``make_backward(kernels)`` from that backend's :class:`Kernels`,
  so the backward runs on the same backend as the forward.

A call then asks :meth:`FusedOp.resolve` which backend serves the tensor's device and runs
:meth:`FusedOp.kernel` of it, or the op's reference when the answer is ``"reference"``.

Example:
    >>> import torch
    >>> from cycleisp_fast.ops.ain import AIN
    >>> AIN.name, sorted(AIN.backends)[-1]
    ('ain_forward', 'triton')
    >>> AIN.resolve("cpu", "reference")
    'reference'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import torch

from cycleisp_fast import _extension
from cycleisp_fast import backend as _backend

Fake = Callable[..., Any]
TRITON_SUFFIX = "_triton"


@dataclass(frozen=True)
class Kernels:
    """The registered operators of one backend: the forward and, where the op has one, its backward."""

    forward: torch._ops.OpOverload
    backward: Optional[torch._ops.OpOverload] = None


def _operator(name: str) -> torch._ops.OpOverload:
    return getattr(torch.ops.cycleisp_fast, name).default


def _per_backend(value: Fake | Mapping[str, Fake] | None, backend: str) -> Fake | None:
    return value.get(backend) if isinstance(value, Mapping) else value


class FusedOp:
    """A fused op's operators on the ``native`` and ``triton`` backends, registered with fake kernels and autograd.

    Args:
        name: the native forward operator (``cycleisp_fast::<name>``); the Triton twin is ``<name>_triton``.
            It is also the name :func:`cycleisp_fast.backend.resolve` asks the extension about.
        fake: the forward's fake kernel, or one per backend (``{"native": f, "triton": g}``) where their
            output layouts differ.
        setup_context: ``torch.library.register_autograd``'s ``setup_context`` (saves what the backward needs).
        make_backward: ``make_backward(kernels) -> backward(ctx, *grads)``, the autograd formula of one backend,
            which may call that backend's :class:`Kernels` (``kernels.backward``, or ``kernels.forward`` again).
        backward: the native backward operator's name, if the op has one (its twin: ``<backward>_triton``).
        backward_fake: its fake kernel, or one per backend.
    """

    def __init__(
        self,
        name: str,
        *,
        fake: Fake | Mapping[str, Fake],
        setup_context: Callable,
        make_backward: Callable[[Kernels], Callable],
        backward: str | None = None,
        backward_fake: Fake | Mapping[str, Fake] | None = None,
    ):
        if (backward is None) != (backward_fake is None):
            raise ValueError(f"{name}: a backward operator needs its fake kernel, and only it")
        self.name = name
        self.backends: dict[str, Kernels] = {}
        """The backends with registered operators (``"triton"`` always, ``"native"`` when the extension loaded)."""
        names = {"triton": (name + TRITON_SUFFIX, backward and backward + TRITON_SUFFIX)}
        if _extension.LOADED:
            names["native"] = (name, backward)
        for impl, (forward_name, backward_name) in names.items():
            torch.library.register_fake(f"cycleisp_fast::{forward_name}")(_per_backend(fake, impl))
            if backward_name is not None:
                torch.library.register_fake(f"cycleisp_fast::{backward_name}")(_per_backend(backward_fake, impl))
            kernels = Kernels(_operator(forward_name), backward_name and _operator(backward_name))
            torch.library.register_autograd(
                f"cycleisp_fast::{forward_name}", make_backward(kernels), setup_context=setup_context
            )
            self.backends[impl] = kernels

    def resolve(self, device_type: str, backend: str | None = None) -> str:
        """The backend (``reference``, ``native`` or ``triton``) that runs this op on ``device_type`` tensors,
        ``backend`` (a call's argument) overriding the one in force; see :func:`cycleisp_fast.backend.resolve`."""
        return _backend.resolve(self.name, device_type, backend)

    def kernel(self, impl: str) -> torch._ops.OpOverload:
        """The forward operator of backend ``impl`` (``native`` or ``triton``), as :meth:`resolve` named it."""
        return self.backends[impl].forward


def features_format(t: torch.Tensor, layouts: bool) -> torch.memory_format:
    """The layout of the outputs like ``t`` of a kernel: channels_last where the kernel takes both layouts
    (``layouts``: the native CPU kernels of AIN and dual attention) and ``t`` is channels_last and not also
    contiguous, as ``prefers_channels_last`` in csrc/ops/stable.h decides; else contiguous."""
    channels_last = layouts and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
    return torch.channels_last if channels_last else torch.contiguous_format


def on_native(fake: Fake) -> Fake:
    """The native twin of a fake kernel ``fake(*args, layouts=...)`` whose CPU kernel keeps channels_last features:
    all tensor arguments share one device (checked before the call), the first one's says which kernel runs."""
    return lambda *args: fake(*args, layouts=args[0].device.type == "cpu")


def reference_autograd(reference_fn: Callable[..., torch.Tensor]) -> dict[str, Callable]:
    """``setup_context`` and ``make_backward`` of an op whose backward is its reference's: the inputs are saved and
    the gradient is autograd through ``reference_fn``, recomputed from them (for ops trained rarely, whose fused
    backward would not pay). Use as ``FusedOp(name, fake=..., **reference_autograd(reference.foo))``."""

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def make_backward(_kernels: Kernels) -> Callable:
        def backward(ctx, grad):
            inputs = [t.detach().requires_grad_(need) for t, need in zip(ctx.saved_tensors, ctx.needs_input_grad)]
            with torch.enable_grad():
                out = reference_fn(*inputs)
            wanted = [t for t in inputs if t.requires_grad]
            grads = iter(torch.autograd.grad(out, wanted, grad, allow_unused=True))
            return tuple(next(grads) if t.requires_grad else None for t in inputs)

        return backward

    return {"setup_context": setup_context, "make_backward": make_backward}
