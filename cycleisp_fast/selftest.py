"""Checks every fused backend against the plain-PyTorch reference on this machine: ``cycleisp-fast selftest``.

For each device (the CPU, and the GPU when there is one), each fused backend that can run there (native;
Triton on a GPU, or on the CPU under ``TRITON_INTERPRET=1``), each case of the registry
(:mod:`cycleisp_fast.cases`), dtype, size and variant (every CFA pattern): the output, and the
gradients of the floating inputs for one random grad_output, must equal the reference's — bit for bit for
pure data movement, within ``torch.testing.assert_close``'s default tolerances otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from cycleisp_fast import backend
from cycleisp_fast.arguments import parse_device
from cycleisp_fast.bench.measure import FUSED
from cycleisp_fast.bench.report import dtype_name, format_size, markdown_table
from cycleisp_fast.cases import HALF_TOLERANCES, Case, Variant, all_cases, grad_leaves, make_generator

DTYPES = {"cpu": (torch.float32,), "cuda": (torch.float32, torch.float16, torch.bfloat16)}
"""Floating input dtypes checked per device type (cases of RAW samples keep their own)."""


@dataclass
class Result:
    """The checks of one case by one backend on one device in one dtype, or why they were skipped."""

    device: str
    backend: str
    case: str
    dtype: str = "-"
    checks: int = 0
    failures: int = 0
    max_abs_error: float | None = None
    skipped: str | None = None

    def record(self, label: str, error: float | None, problem: str | None) -> None:
        """Counts one comparison (``error`` None when the backend raised); prints it when it failed."""
        self.checks += 1
        if error is not None:
            self.max_abs_error = error if self.max_abs_error is None else max(self.max_abs_error, error)
        if problem is not None:
            self.failures += 1
            print(f"FAIL {label}: " + (problem if error is None else f"max abs error {error:.3g} ({problem})"))

    @property
    def status(self) -> str:
        """The table's result of a checked (not skipped) backend: ``"PASS"`` or ``"FAIL (failures/checks)"``."""
        return "PASS" if self.failures == 0 else f"FAIL ({self.failures}/{self.checks})"


def default_devices() -> list[torch.device]:
    """The CPU, and the current GPU when CUDA is available."""
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def _forward_and_grads(
    fn: Callable, inputs: Sequence[torch.Tensor], generator: torch.Generator, grad_output: torch.Tensor | None = None
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """``[fn(*inputs), grads of the floating inputs]`` for ``grad_output`` (drawn like the output when None)."""
    leaves = grad_leaves(inputs)
    output = fn(*leaves)
    wrt = [t for t in leaves if t.requires_grad]
    if not wrt:
        return [output.detach()], None
    if grad_output is None:
        grad_output = torch.randn(output.shape, dtype=output.dtype, device=output.device, generator=generator)
    return [
        output.detach(),
        *torch.autograd.grad(output, wrt, grad_output, allow_unused=True, materialize_grads=True),
    ], grad_output


def _max_abs_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    if actual.shape != expected.shape:
        return float("inf")
    if actual.numel() == 0:
        return 0.0
    return (actual.double() - expected.double()).abs().max().item()


def _mismatch(actual: torch.Tensor, expected: torch.Tensor, exact: bool, tolerances=None) -> str | None:
    """Why ``actual`` does not match ``expected`` (first line of assert_close's message), or None. Non-exact
    checks use ``tolerances`` (None: assert_close's defaults) except in half precision."""
    if exact:
        tolerances = {"rtol": 0.0, "atol": 0.0}
    else:
        tolerances = HALF_TOLERANCES.get(expected.dtype, tolerances or {})
    try:
        torch.testing.assert_close(actual, expected, equal_nan=True, **tolerances)
    except AssertionError as error:
        return str(error).strip().partition("\n")[0]
    return None


def _check_variant(
    result: Result,
    case: Case,
    name: str,
    inputs: Sequence[torch.Tensor],
    variant: Variant,
    generator: torch.Generator,
    label: str,
) -> None:
    """Compares ``name``'s output and input gradients with the reference's for one variant. The reference
    always runs on the CPU, the canonical result (the seeded noise must be the same on every device), in the
    inputs' dtype; grad_output is drawn on the CPU from ``generator``'s next seed."""
    cpu_generator = torch.Generator().manual_seed(
        int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    )
    expected, grad_output = _forward_and_grads(
        functools.partial(case.reference, **variant.kwargs), [t.cpu() for t in inputs], cpu_generator
    )
    try:
        device_grad = None if grad_output is None else grad_output.to(inputs[0].device)
        actual, _ = _forward_and_grads(
            functools.partial(case.op, **variant.kwargs, backend=name), inputs, generator, device_grad
        )
        actual = [t.cpu() for t in actual]
    except Exception as error:  # a crashing backend is a failed check, not a crashed selftest
        first_line = str(error).partition("\n")[0]
        result.record(label, None, f"raised {type(error).__name__}: {first_line}")
        return
    grads = [f"grad of input {i}" for i, t in enumerate(inputs) if t.is_floating_point()]
    for what, got, want in zip(["output"] + grads, actual, expected):
        tolerances = None if what == "output" else variant.grad_tolerances
        result.record(f"{label} {what}", _max_abs_error(got, want), _mismatch(got, want, variant.exact, tolerances))


def check_case(case: Case, name: str, device: torch.device, dtype: torch.dtype) -> Result:
    """Runs every size and variant of ``case`` through backend ``name`` and the reference."""
    result = Result(device.type, name, case.name, dtype_name(dtype))
    generator = make_generator(device)
    for size in case.selftest_sizes:
        inputs = case.make_inputs(size, dtype, device, generator)
        for variant in case.variants:
            label = (
                f"{case.name} [backend={name}, device={device}, dtype={dtype_name(dtype)}, {variant}, "
                f"size={format_size(size)}]"
            )
            _check_variant(result, case, name, inputs, variant, generator, label)
    return result


def check_backend(name: str, device: torch.device) -> list[Result]:
    """Checks every case that backend ``name`` can run on ``device``; one skipped result for each other."""
    results = []
    unavailable = backend.backend_unavailable(name, device.type)  # one reason for every op, said once
    for case in all_cases().values():
        reason = unavailable
        if reason is None:
            try:
                backend.resolve(case.kernel, device.type, name)
            except RuntimeError as error:
                reason = str(error)
        if reason is not None:
            results.append(Result(device.type, name, case.name, skipped=reason))
            continue
        dtypes = (case.selftest_dtype,) if case.selftest_dtype is not None else case.dtypes(DTYPES[device.type])
        results += [check_case(case, name, device, dtype) for dtype in dtypes]
    return results


def format_results(results: Sequence[Result]) -> str:
    """A markdown table of the checked ``results``, then one line per skipped backend, device and reason (with how
    many ops it covers), e.g. ``triton on cpu skipped for 9 ops: Triton runs CPU tensors only ...``."""
    checked = [r for r in results if r.skipped is None]
    cells = [("device", "backend", "op", "dtype", "checks", "max abs error", "result")] + [
        (
            r.device,
            r.backend,
            r.case,
            r.dtype,
            str(r.checks),
            "-" if r.max_abs_error is None else f"{r.max_abs_error:.3g}",
            r.status,
        )
        for r in checked
    ]
    skipped: dict[tuple[str, str, str], list[str]] = {}
    for r in results:
        if r.skipped is not None:
            skipped.setdefault((r.backend, r.device, r.skipped), []).append(r.case)
    reasons = [
        f"{backend} on {device} skipped for {len(cases)} op{'s' * (len(cases) > 1)}: {reason}"
        for (backend, device, reason), cases in skipped.items()
    ]
    table = markdown_table(cells) if checked else []
    return "\n".join(table + [""] * bool(table and reasons) + reasons)


@contextlib.contextmanager
def full_precision_float32():
    """No TF32 in cuBLAS / cuDNN while it lasts: the reference's float32 convolutions and products on a GPU
    (TF32 by default in cuDNN) are then float32-accurate, as the fused kernels are."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def run_selftest(devices: Sequence[str | torch.device] | None = None) -> bool:
    """Checks every fused backend against the reference on ``devices`` (default: the CPU, and the GPU if any).

    Prints each failure (op, backend, device, dtype, variant with the CFA pattern, size, max abs error) as it
    happens, then a pass/fail table. Returns True when no check failed (skipped backends do not fail).
    """
    devices = default_devices() if devices is None else [torch.device(d) for d in devices]
    with full_precision_float32():
        results = [result for device in devices for name in FUSED for result in check_backend(name, device)]
    print(format_results(results))
    checks = sum(r.checks for r in results)
    failures = sum(r.failures for r in results)
    if checks == 0:
        print("selftest: no fused backend runs here, so nothing was checked (the reference serves every op)")
    else:
        print(f"selftest: {'PASS' if failures == 0 else 'FAIL'}, {checks - failures}/{checks} checks passed")
    return failures == 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``selftest`` option ``--devices`` to ``parser``."""
    parser.add_argument(
        "--devices",
        nargs="+",
        type=parse_device,
        metavar="DEVICE",
        help="cpu, cuda or cuda:<index> (default: the CPU, and the GPU when there is one)",
    )


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``cycleisp-fast selftest``: exit code 0 when every check passed, 1 otherwise."""
    return 0 if run_selftest(args.devices) else 1
