"""The case registry shared by the benchmarks (:mod:`cycleisp_fast.bench`), the selftest
(:mod:`cycleisp_fast.selftest`) and the op tests (``tests/ops/harness.py``): one module of cases per op family.

A case is one public op at one setting: how to make its inputs, its plain-PyTorch reference, the public op
(called with ``backend="native"`` or ``backend="triton"``), the sizes to time, to selftest and to unit-test, and
the minimum bytes (and optionally FLOPs) of a call. To add an op ``foo``, write ``cycleisp_fast/cases/foo.py``
with a tuple ``CASES`` of :class:`Case` and add ``"foo"`` to :data:`OP_MODULES`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

OP_MODULES = ("bayer", "ain", "noise", "physical_noise", "dual_attention", "camera", "models")
"""Modules of ``cycleisp_fast.cases`` that define ``CASES``, one per op family."""

MODES = ("forward", "forward+backward")

Size = tuple[int, ...]
"""The shape of a case's first input, e.g. ``(4, 1, 1024, 1024)``."""


@dataclass(frozen=True)
class Variant:
    """Keyword arguments of one call of a case's op, and whether every backend must equal the reference
    bit for bit (pure data movement) or within ``torch.testing.assert_close``'s default tolerances."""

    kwargs: Mapping[str, object]
    exact: bool = True
    grad_tolerances: Mapping[str, float] | None = None
    """``assert_close`` tolerances for the input gradients of full-precision dtypes, when they are sums over
    many elements whose rounding depends on the summation order (None: assert_close's defaults)."""

    def __str__(self) -> str:
        return ", ".join(f"{key}={_short(value)}" for key, value in self.kwargs.items())


def _short(value: object) -> str:
    """``"RGGB"`` -> ``RGGB``; ``(0.05, 0.06)`` -> ``(0.05,0.06)``: compact enough for one table cell."""
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(format(v, "g") if isinstance(v, float) else str(v) for v in value) + ")"
    return str(value)


def io_bytes(inputs: Sequence[torch.Tensor], output: torch.Tensor, mode: str) -> int:
    """Minimum bytes of a call: every input read once and the output written once; with the backward,
    also grad_output read once and one gradient written per floating input."""
    forward = sum(t.nelement() * t.element_size() for t in inputs) + output.nelement() * output.element_size()
    if mode == "forward":
        return forward
    grads = sum(t.nelement() * t.element_size() for t in inputs if t.is_floating_point())
    return forward + output.nelement() * output.element_size() + grads


@dataclass(frozen=True)
class Case:
    """One op at one setting, for the benchmarks, the selftest and the op tests.

    Attributes:
        name: unique name, chosen with ``--ops``.
        kernel: the registered operator behind ``op`` (``cycleisp_fast::<kernel>``), for ``backend.resolve``.
        op: the public op, ``op(*inputs, **variant.kwargs, backend=name) -> Tensor``.
        reference: the plain-PyTorch reference, ``reference(*inputs, **variant.kwargs) -> Tensor``.
        baseline: what ``eager`` and ``compile`` time, same signature; the reference when None (set it when
            the usual eager composite differs from the reference, e.g. ``F.instance_norm`` for AIN).
        make_inputs: ``(size, dtype, device, generator) -> tuple of input tensors``, the first of shape ``size``.
        size_doc: the sizes the case takes, e.g. ``"N x 3 x H x W, H and W even"``.
        fits: whether the case takes a size.
        default_sizes, quick_sizes, selftest_sizes: sizes for a full run, ``--quick`` and the selftest.
        test_sizes: small sizes the op tests (``tests/ops``) check in every dtype, on top of the selftest sizes
            (checked there in float32); empty: the selftest sizes only. Small: Triton runs there in its CPU
            interpreter.
        variants: keyword arguments to check in the selftest; the benchmarks time the first.
        dtype: the input dtype when the case has one of its own (RAW samples), else ``--dtypes`` picks.
        opt_in: timed only when named with ``--ops`` (whole networks and pipelines: minutes per case on a CPU); the
            selftest checks it always.
        selftest_dtype: the dtype the selftest checks in, when it is not the timed one (a whole AINDNet's
            float32 gradients are ill-conditioned: see :mod:`cycleisp_fast.cases.models`).
        network: for a whole network, what builds it (``network.build(backend) -> nn.Module``, ``network.raw``,
            ``network.channels_last``: see :mod:`cycleisp_fast.cases.models`); the benchmarks then time the module
            itself (:mod:`cycleisp_fast.bench.networks`).
        train_sizes: for a whole network, the batch of a timed training step per device type.
        min_bytes: ``(inputs, output, mode) -> bytes`` a call must move at least.
        flops: ``(inputs, output, mode) -> FLOPs`` of a call, for compute-bound ops.
    """

    name: str
    kernel: str
    op: Callable[..., torch.Tensor]
    reference: Callable[..., torch.Tensor]
    make_inputs: Callable[[Size, torch.dtype, torch.device, torch.Generator], tuple[torch.Tensor, ...]]
    size_doc: str
    fits: Callable[[Size], bool]
    default_sizes: tuple[Size, ...]
    quick_sizes: tuple[Size, ...]
    selftest_sizes: tuple[Size, ...]
    variants: tuple[Variant, ...]
    test_sizes: tuple[Size, ...] = ()
    dtype: torch.dtype | None = None
    selftest_dtype: torch.dtype | None = None
    opt_in: bool = False
    baseline: Callable[..., torch.Tensor] | None = None
    network: Any = None
    train_sizes: Mapping[str, Size] | None = None
    min_bytes: Callable[[Sequence[torch.Tensor], torch.Tensor, str], int] = io_bytes
    flops: Callable[[Sequence[torch.Tensor], torch.Tensor, str], int] | None = None

    def dtypes(self, requested: Sequence[torch.dtype]) -> tuple[torch.dtype, ...]:
        """The input dtypes to run: the case's own, else the ``requested`` ones."""
        return (self.dtype,) if self.dtype is not None else tuple(requested)


def family_cases(module_name: str) -> tuple[Case, ...]:
    """The cases of one op family: ``CASES`` of ``cycleisp_fast.cases.<module_name>`` (one of :data:`OP_MODULES`)."""
    if module_name not in OP_MODULES:
        raise ValueError(f"no case module {module_name!r}: one of {', '.join(OP_MODULES)}")
    return tuple(importlib.import_module(f"cycleisp_fast.cases.{module_name}").CASES)


def case_families() -> dict[str, str]:
    """Each registered case's family, the module that registers it (``bayer_pack`` -> ``bayer``; whole networks
    -> ``models``): how the benchmark plot groups its panels."""
    return {case.name: module_name for module_name in OP_MODULES for case in family_cases(module_name)}


def all_cases() -> dict[str, Case]:
    """Every registered case by name, in registration order."""
    cases: dict[str, Case] = {}
    for module_name in OP_MODULES:
        for case in family_cases(module_name):
            if case.name in cases:
                raise ValueError(f"case {case.name!r} is registered twice (second time by {module_name}.py)")
            cases[case.name] = case
    return cases


HALF_TOLERANCES = {torch.float16: {"rtol": 1e-2, "atol": 1e-2}, torch.bfloat16: {"rtol": 2e-2, "atol": 2e-2}}
"""Non-exact checks in half precision: a reduction in another order than the reference's (statistics are
float32 on both sides) moves the half-precision result by an ulp or two; other dtypes use assert_close's
defaults."""


def grad_leaves(inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The inputs as fresh autograd leaves, requiring grad where they are floating."""
    return tuple(t.detach().requires_grad_(t.is_floating_point()) for t in inputs)


def make_generator(device: torch.device, seed: int = 0) -> torch.Generator:
    """A seeded generator on ``device``, so every run draws the same inputs."""
    return torch.Generator(device=device).manual_seed(seed)
