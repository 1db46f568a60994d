"""The shared tests of every op family, run over the family's cases of :mod:`cycleisp_fast.cases` (the cases the
benchmarks and the selftest use), in the manner of torchvision's ``RoIOpTester``.

:class:`OpTester` holds the tests; a test file subclasses it once per family (``class TestAIN(OpTester)``), naming
the family and its cases and overriding the tolerances or the comparison where the op needs its own. Each shared
test takes its parameters from :meth:`OpTester.pytest_generate_tests`:

- ``test_matches_reference``: every case, fused backend that runs it here and dtype; output and the gradients of
  the floating inputs (one random grad_output) equal the reference's, over the case's ``test_sizes`` in every
  dtype and its selftest sizes in float32, for every variant;
- ``test_layouts_match_reference``: channels_last, reversed strides and batch-broadcast (stride-0) inputs (and
  constant planes expanded from a pixel, where the family asks), and a ``out.sum().backward()`` (stride-0
  gradient), against the reference on the same inputs;
- ``test_empty_batch``: a batch of 0 images gives the reference's (empty) shape, backward included;
- ``test_gradcheck_float64``: float64 gradcheck (and gradgradcheck) of the reference and the fused backends,
  where the family sets :attr:`OpTester.gradcheck_sizes`;
- ``test_opcheck``: ``torch.library.opcheck`` of the registered operators the family lists
  (:meth:`OpTester.opcheck_calls`).

Triton runs in its CPU interpreter here (tests/conftest.py), so the case modules keep the test sizes tiny.
"""

from __future__ import annotations

import functools
from typing import Callable, ClassVar, Iterable, Sequence

import pytest
import torch
from conftest import fused_backends

from cycleisp_fast.cases import HALF_TOLERANCES, Case, Size, Variant, family_cases, grad_leaves, make_generator

CPU = torch.device("cpu")
ALL_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def dtype_id(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``float32``, for test ids."""
    return str(dtype).removeprefix("torch.")


def forward_and_grads(
    fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    grad_output: torch.Tensor | str | None = None,
    seed: int = 1,
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """``([fn(*inputs), grads of the floating inputs], grad_output)`` for fresh leaves of the inputs.

    grad_output: a tensor; ``"sum"`` for the stride-0 ones that ``out.sum().backward()`` hands the backward; None
    to draw one (standard normal in float64 from ``seed``, rounded to the output's dtype). Gradients of inputs the
    output does not depend on are zeros."""
    leaves = grad_leaves(inputs)
    output = fn(*leaves)
    wrt = [t for t in leaves if t.requires_grad]
    if not wrt or not output.requires_grad:
        return [output.detach()], None
    if isinstance(grad_output, str):
        grad_output = torch.ones((), dtype=output.dtype).expand(output.shape)
    elif grad_output is None:
        generator = torch.Generator().manual_seed(seed)
        grad_output = torch.randn(output.shape, dtype=torch.float64, generator=generator).to(output.dtype)
    grads = torch.autograd.grad(output, wrt, grad_output, allow_unused=True, materialize_grads=True)
    return [output.detach(), *grads], grad_output


def result_names(inputs: Sequence[torch.Tensor]) -> list[str]:
    """``["output", "grad of input 0", ...]``: what :func:`forward_and_grads` returns, by name."""
    return ["output"] + [f"grad of input {i}" for i, t in enumerate(inputs) if t.is_floating_point()]


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """A 4-D tensor in channels_last memory format (others unchanged)."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


def reversed_strides(t: torch.Tensor) -> torch.Tensor:
    """The same values with the last dimension varying slowest in memory (non-contiguous when two dims exceed 1)."""
    if t.dim() < 2:
        return t
    order = tuple(range(t.dim() - 1, -1, -1))
    return t.permute(order).contiguous().permute(order)


def batch_broadcast(t: torch.Tensor) -> torch.Tensor:
    """A 4-D tensor's first image expanded over the batch (batch stride 0; others unchanged)."""
    return t[:1].expand_as(t) if t.dim() == 4 and t.shape[0] > 1 else t


def pixel_broadcast(t: torch.Tensor) -> torch.Tensor:
    """A 4-D tensor's first pixel of each channel expanded over batch, height and width (stride 0 but for the
    channels; others unchanged)."""
    return t[:1, :, :1, :1].expand_as(t) if t.dim() == 4 else t


LAYOUTS = {
    "channels_last": channels_last,
    "reversed_strides": reversed_strides,
    "batch_broadcast": batch_broadcast,
    "pixel_broadcast": pixel_broadcast,
}
"""Memory layouts of the inputs that the fused backends must read as the reference does (the default
:attr:`OpTester.layouts`: all but ``pixel_broadcast``, which makes every plane constant)."""


class OpTester:
    """Base class of an op family's tests: the shared tests over the family's cases; subclasses set :attr:`family`
    (a module of :mod:`cycleisp_fast.cases`) and may narrow :attr:`case_names`, :attr:`dtypes`, the sizes and the
    tolerances, or replace the comparison (:meth:`assert_matches_reference`)."""

    family: ClassVar[str] = ""
    """The case module (one of ``cycleisp_fast.cases.OP_MODULES``)."""
    case_names: ClassVar[tuple[str, ...] | None] = None
    """The cases to test (None: every case of the family that is not opt-in)."""
    dtypes: ClassVar[tuple[torch.dtype, ...]] = ALL_DTYPES
    """Floating dtypes checked (a case with a dtype of its own keeps it)."""
    layouts: ClassVar[tuple[str, ...]] = ("channels_last", "reversed_strides", "batch_broadcast")
    """The :data:`LAYOUTS` checked by ``test_layouts_match_reference``."""
    gradcheck_sizes: ClassVar[dict[str, Size]] = {}
    """Case name -> the size of its float64 gradcheck (cases not listed: no shared gradcheck)."""
    gradcheck_backends: ClassVar[tuple[str, ...] | None] = None
    """Backends gradchecked (None: the reference and every fused backend)."""
    gradgradcheck: ClassVar[bool] = False
    """Whether the gradcheck also checks second derivatives."""
    empty_batch: ClassVar[bool] = True
    """Whether the cases take a batch of 0 images (``test_empty_batch``)."""

    # ---- what the subclasses may override

    @classmethod
    def cases(cls) -> list[Case]:
        """The family's cases under test."""
        cases = [case for case in family_cases(cls.family) if not case.opt_in]
        if cls.case_names is not None:
            by_name = {case.name: case for case in cases}
            cases = [by_name[name] for name in cls.case_names]
        return cases

    def sizes(self, case: Case, dtype: torch.dtype) -> tuple[Size, ...]:
        """The sizes checked in ``dtype``: the case's test sizes, and its selftest sizes in float32 (or in its own
        dtype)."""
        extra = case.selftest_sizes if dtype == torch.float32 or case.dtype is not None else ()
        return tuple(dict.fromkeys(case.test_sizes + tuple(extra)))

    def make_inputs(self, case: Case, size: Size, dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
        """The case's inputs of ``size`` on the CPU, drawn from ``seed``."""
        return list(case.make_inputs(size, dtype, CPU, make_generator(CPU, seed)))

    def tolerances(self, case: Case, variant: Variant, dtype: torch.dtype, backend: str, what: str) -> dict:
        """``assert_close`` tolerances of one result (``what``: a :func:`result_names` entry): bit-exact for exact
        variants, :data:`~cycleisp_fast.cases.HALF_TOLERANCES` in half precision, else the variant's gradient
        tolerances for gradients and assert_close's defaults."""
        if variant.exact:
            return {"rtol": 0.0, "atol": 0.0}
        if dtype in HALF_TOLERANCES:
            return dict(HALF_TOLERANCES[dtype])
        return dict(variant.grad_tolerances or {}) if what != "output" else {}

    def assert_matches_reference(
        self,
        case: Case,
        backend: str,
        inputs: Sequence[torch.Tensor],
        variant: Variant,
        grad_output: str | None = None,
        label: str = "",
    ) -> None:
        """``backend``'s output and input gradients equal the reference's (dtype, shape and values) on ``inputs``
        (grad_output as :func:`forward_and_grads` takes it)."""
        expected, drawn = forward_and_grads(functools.partial(case.reference, **variant.kwargs), inputs, grad_output)
        actual, _ = forward_and_grads(
            functools.partial(case.op, **variant.kwargs, backend=backend),
            inputs,
            drawn if drawn is not None else grad_output,
        )
        assert len(actual) == len(expected), f"{label}: {len(actual)} results, reference {len(expected)}"
        dtype = inputs[0].dtype
        for what, a, e in zip(result_names(inputs), actual, expected):
            assert a.dtype == e.dtype and a.shape == e.shape, (
                f"{label} {what}: {a.dtype} {tuple(a.shape)}, reference {e.dtype} {tuple(e.shape)}"
            )
            self.assert_close(a, e, case, variant, dtype, backend, what, f"{label} {what}")

    def assert_close(
        self,
        actual: torch.Tensor,
        expected: torch.Tensor,
        case: Case,
        variant: Variant,
        dtype: torch.dtype,
        backend: str,
        what: str,
        label: str,
    ) -> None:
        """One result against the reference's: ``assert_close`` (NaN equal to NaN) within :meth:`tolerances`."""
        torch.testing.assert_close(
            actual,
            expected,
            equal_nan=True,
            **self.tolerances(case, variant, dtype, backend, what),
            msg=lambda m: f"{label}: {m}",
        )

    def opcheck_calls(self, backend: str) -> Iterable[tuple[object, tuple]]:
        """``(registered operator, args)`` pairs that ``test_opcheck`` hands ``torch.library.opcheck``."""
        return ()

    # ---- parametrization

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrizes the shared tests: ``(case, backend[, dtype])`` over the cases and the fused backends that
        run them here; ``backend`` alone (``test_opcheck``) over the family's fused backends."""
        names = metafunc.fixturenames
        if "case" not in names:
            if "backend" in names and metafunc.function.__name__ == "test_opcheck":
                backends = dict.fromkeys(b for case in self.cases() for b in fused_backends(case.kernel))
                metafunc.parametrize("backend", list(backends))
            return
        gradcheck = metafunc.function.__name__ == "test_gradcheck_float64"
        argnames = "case,backend,dtype" if "dtype" in names else "case,backend"
        if metafunc.function.__name__ == "test_empty_batch" and not self.empty_batch:
            metafunc.parametrize(
                argnames,
                [
                    pytest.param(
                        *[None] * len(argnames.split(",")),
                        marks=pytest.mark.skip(reason=f"{type(self).__name__}: the cases take no empty batch"),
                    )
                ],
            )
            return
        params = []
        for case in self.cases():
            if gradcheck:
                if case.name not in self.gradcheck_sizes:
                    continue
                backends = [
                    b
                    for b in ("reference", *fused_backends(case.kernel))
                    if self.gradcheck_backends is None or b in self.gradcheck_backends
                ]
            else:
                backends = fused_backends(case.kernel)
            for backend in backends:
                if "dtype" in names:
                    params += [
                        pytest.param(case, backend, dtype, id=f"{case.name}-{backend}-{dtype_id(dtype)}")
                        for dtype in case.dtypes(self.dtypes)
                    ]
                else:
                    params.append(pytest.param(case, backend, id=f"{case.name}-{backend}"))
        if not params:
            reason = (
                f"{type(self).__name__} has no shared gradcheck (gradcheck_sizes)"
                if gradcheck
                else f"no fused backend runs the {self.family} cases here"
            )
            params = [pytest.param(*[None] * len(argnames.split(",")), marks=pytest.mark.skip(reason=reason))]
        metafunc.parametrize(argnames, params)

    # ---- the shared tests

    def test_matches_reference(self, case: Case, backend: str, dtype: torch.dtype) -> None:
        """Output and input gradients equal the reference's for every size and variant."""
        for size in self.sizes(case, dtype):
            inputs = self.make_inputs(case, size, dtype)
            for variant in case.variants:
                self.assert_matches_reference(
                    case,
                    backend,
                    inputs,
                    variant,
                    label=f"{case.name} [{backend}, {dtype_id(dtype)}, {size}, {variant}]",
                )

    def test_layouts_match_reference(self, case: Case, backend: str) -> None:
        """Non-contiguous and stride-0 inputs, and the stride-0 gradient of ``out.sum().backward()``, give the
        reference's output and gradients."""
        dtype = case.dtype or torch.float32
        size = (case.test_sizes or case.selftest_sizes)[0]
        inputs = self.make_inputs(case, size, dtype)
        variant = case.variants[0]
        for name in self.layouts:
            laid_out = [LAYOUTS[name](t) for t in inputs]
            self.assert_matches_reference(case, backend, laid_out, variant, label=f"{case.name} [{backend}, {name}]")
        self.assert_matches_reference(
            case, backend, inputs, variant, grad_output="sum", label=f"{case.name} [{backend}, sum().backward()]"
        )

    def test_empty_batch(self, case: Case, backend: str) -> None:
        """A batch of 0 images: the reference's empty output, and a backward that runs."""
        size = (case.test_sizes or case.selftest_sizes)[0]
        inputs = self.make_inputs(case, (0, *size[1:]), case.dtype or torch.float32)
        for variant in case.variants:
            expected, _ = forward_and_grads(functools.partial(case.reference, **variant.kwargs), inputs)
            actual, _ = forward_and_grads(functools.partial(case.op, **variant.kwargs, backend=backend), inputs)
            assert [(t.dtype, t.shape) for t in actual] == [(t.dtype, t.shape) for t in expected], variant

    def test_gradcheck_float64(self, case: Case, backend: str) -> None:
        """float64 gradcheck (and gradgradcheck when the family sets it) of every variant."""
        inputs = self.make_inputs(case, self.gradcheck_sizes[case.name], torch.float64)
        leaves = grad_leaves(inputs)
        for variant in case.variants:
            fn = functools.partial(case.op, **variant.kwargs, backend=backend)
            assert torch.autograd.gradcheck(fn, leaves), variant
            if self.gradgradcheck:
                assert torch.autograd.gradgradcheck(fn, leaves), variant

    def test_opcheck(self, backend: str) -> None:
        """``torch.library.opcheck`` (schema, fake tensor, autograd registration) of the family's operators."""
        calls = list(self.opcheck_calls(backend))
        if not calls:
            pytest.skip(f"{type(self).__name__} lists no operator to opcheck on {backend}")
        for op, args in calls:
            torch.library.opcheck(op, args)
