"""Timing of a case's providers, and of the machine's copy bandwidth and matmul rate, in the same run.

Providers: ``eager`` (the case's baseline, by default its reference), ``compile`` (``torch.compile`` of it,
fullgraph), and the fused backends ``native`` and ``triton`` (the public op with ``backend=``); whole networks
also ``optimized`` (:mod:`cycleisp_fast.bench.networks`). The providers of a case and its copy roofline take
turns (:func:`interleaved_seconds`: rounds of one block each, CUDA synchronized around every block), so that a drift
of the machine's speed during the run falls on all of them alike; a time is the median of its blocks.
"""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from cycleisp_fast import backend
from cycleisp_fast.cases import Case, Size, grad_leaves, make_generator

PROVIDERS = ("eager", "compile", "native", "triton", "optimized", "optimized-bf16")
FUSED = ("native", "triton")
NETWORK_ONLY = ("optimized", "optimized-bf16")
"""Providers of whole networks only: :func:`cycleisp_fast.optimize` in float32 and in bfloat16 (see
:mod:`cycleisp_fast.bench.networks`)."""
COPY_BYTES = 256 << 20
"""Bytes of each buffer of the machine-wide copy-bandwidth probe: beyond most caches (printed for context)."""
MATMUL_SIZES = {"cpu": 1024, "cuda": 2048}
WARMUP_CALLS = 3
TIMING_ROUNDS = 5
"""Rounds of :func:`interleaved_seconds`: each runs every step for a block of ``min_run_time / TIMING_ROUNDS``."""
COPY_STEP = " copy"
"""The roofline's name among the steps of :func:`interleaved_seconds` (no provider's name starts with a space)."""


@dataclass(frozen=True)
class Rates:
    """What the machine does at best: ``dst.copy_(src)`` in GB/s (read + write) and fp32 ``torch.mm`` in GFLOP/s."""

    copy_gb_per_s: float
    matmul_gflop_per_s: float | None


@dataclass(frozen=True)
class Timing:
    """The median time of one provider of one case at one mode, size and dtype, with its minimum work."""

    case: str
    provider: str
    mode: str
    size: Size
    dtype: torch.dtype
    seconds: float
    min_bytes: int
    copy_seconds: float
    """The roofline: ``dst.copy_(src)`` moving the same ``min_bytes`` (read + write), timed in the same run, so
    the op and its bound see the same caches."""
    flops: int | None
    peak_bytes: int | None
    """Memory a call allocates at its peak beyond what was allocated before it (see :func:`peak_memory_bytes`)."""
    psnr_vs_eager: float | None = None
    """Whole networks' inference: PSNR (dB, peak 1) of this provider's output against eager's float32 output."""


def note(message: str) -> None:
    """Progress and skipped providers go to stderr, so stdout holds just the table."""
    print(message, file=sys.stderr, flush=True)


_UNAVAILABLE: dict[tuple[str, str, str], list[str]] = {}


def note_unavailable(provider: str, case_name: str, device_type: str, reason: str) -> None:
    """Records that ``provider`` cannot time ``case_name`` (:func:`unavailable_reason`); :func:`flush_unavailable`
    says it once for all the cases that share the provider, device and reason."""
    cases = _UNAVAILABLE.setdefault((provider, device_type, reason), [])
    if case_name not in cases:
        cases.append(case_name)


def flush_unavailable() -> None:
    """One line per (provider, device, reason) recorded by :func:`note_unavailable`, e.g. ``skipped triton on cpu
    for 9 cases (ain, ... and 5 more): Triton runs CPU tensors only in its interpreter ...``."""
    for (provider, device_type, reason), cases in _UNAVAILABLE.items():
        shown = ", ".join(cases[:4]) + (f" and {len(cases) - 4} more" if len(cases) > 4 else "")
        count = f"{len(cases)} cases ({shown})" if len(cases) > 1 else shown
        note(f"skipped {provider} on {device_type} for {count}: {reason}")
    _UNAVAILABLE.clear()


def median_seconds(fn: Callable[[], object], min_run_time: float) -> float:
    """Median seconds of ``fn()`` over blocks of calls lasting ``min_run_time`` in all, on every CPU thread."""
    from torch.utils import benchmark  # here: importing it warns on a CUDA build of torch without a GPU

    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def interleaved_seconds(
    steps: Mapping[str, Callable[[], object]], min_run_time: float, device: torch.device
) -> dict[str, float]:
    """Median seconds per call of each step, the steps taking turns.

    :data:`TIMING_ROUNDS` rounds run every step, in order, for a block of calls lasting about ``min_run_time /
    TIMING_ROUNDS`` (at least one call; the block's length follows the step's previous block); a step's time is
    the median of its blocks' seconds per call. Timed one after the other, a provider met whatever else the
    machine ran during its own seconds (a shared VM's neighbours, memory bandwidth that drifts): here every
    provider meets it alike, and the ratios of one run compare like with like.

    Args:
        steps: name -> a call to time, already warm (compiled, caches filled).
        min_run_time: seconds each step runs in all.
        device: where they run (CUDA is synchronized around every block).

    Returns:
        name -> median seconds per call.

    Shape:
        Not applicable (times callables).

    Example:
        >>> times = interleaved_seconds({"sum": lambda: sum(range(100))}, 0.01, torch.device("cpu"))
        >>> list(times) == ["sum"] and times["sum"] > 0
        True
    """
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    block = min_run_time / TIMING_ROUNDS
    per_call = {}  # the last block's seconds per call: sizes the next block
    for name, step in steps.items():  # one call each, not counted: the first block's size
        synchronize()
        start = time.perf_counter()
        step()
        synchronize()
        per_call[name] = max(time.perf_counter() - start, 1e-9)
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(TIMING_ROUNDS):
        for name, step in steps.items():
            calls = max(1, round(block / per_call[name]))
            synchronize()
            start = time.perf_counter()
            for _ in range(calls):
                step()
            synchronize()
            per_call[name] = max((time.perf_counter() - start) / calls, 1e-9)
            samples[name].append(per_call[name])
    return {name: statistics.median(values) for name, values in samples.items()}


def measure_rates(device: torch.device, min_run_time: float, matmul: bool) -> Rates:
    """The copy bandwidth of ``device``, and its fp32 matmul rate when ``matmul``."""
    src = torch.ones(COPY_BYTES // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)  # touches every page before timing
    copy_seconds = median_seconds(functools.partial(dst.copy_, src), min_run_time)
    del src, dst
    matmul_rate = None
    if matmul:
        n = MATMUL_SIZES[device.type]
        generator = make_generator(device)
        a, b = (torch.randn(n, n, device=device, generator=generator) for _ in range(2))
        matmul_rate = 2 * n**3 / median_seconds(lambda: torch.mm(a, b), min_run_time) / 1e9
    return Rates(copy_gb_per_s=2 * COPY_BYTES / copy_seconds / 1e9, matmul_gflop_per_s=matmul_rate)


def copy_step(min_bytes: int, device: torch.device) -> Callable[[], object]:
    """The roofline's step: a copy that reads and writes ``min_bytes`` in all (two buffers of ``min_bytes / 2``,
    every page touched before timing)."""
    src = torch.ones(max(1, min_bytes // 2), dtype=torch.uint8, device=device)
    dst = src.clone()
    return lambda: dst.copy_(src)


@contextlib.contextmanager
def _quiet_stderr():
    """Sends the process's stderr (file descriptor 2) to /dev/null: the profiler's C++ side logs its start and
    stop there on every use. Used only around a step that has run before, whose warnings were shown then."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _cpu_peak_bytes(step: Callable[[], object]) -> int:
    """The peak, during ``step()``, of the bytes held by tensors that torch's CPU allocator handed out in it (the
    allocations less the frees, in the order the profiler recorded them): what ``max_memory_allocated`` measures
    on CUDA, except that frees of memory allocated before the step are not subtracted (the profiler knows no size
    for them: a training step's zero_grad frees the last gradients, so the peak is high by at most their size).
    Not counted: memory that kernels take outside torch's allocator (oneDNN's and MKL's scratch, the
    Winograd kernels' per-thread tile buffers, ~1-3 MiB a thread), and what glibc's heap keeps after frees (the
    resident size, which this column was until the Winograd weight gradient landed, read 1.1-1.6x higher and
    moved by ~10 % between runs)."""
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as recorded:
        step()
    changes = sorted(
        (event.start_ns(), event.nbytes())
        for event in recorded.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    return peak


def peak_memory_bytes(step: Callable[[], object], device: torch.device) -> int | None:
    """Bytes that one ``step()`` allocates at its peak beyond what was allocated before it: activations saved
    for the backward, outputs, gradients and scratch, not the inputs. CUDA: the caching allocator's peak; CPU:
    the same peak of torch's CPU allocator, from the profiler's memory events (:func:`_cpu_peak_bytes`)."""
    if device.type != "cuda":
        return _cpu_peak_bytes(step)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def unavailable_reason(case: Case, provider: str, device: torch.device) -> str | None:
    """Why ``provider`` cannot be timed for ``case`` on ``device``, or None when it can."""
    if provider in NETWORK_ONLY:
        return None if case.network is not None else "it times whole networks only (--ops denoisenet_srgb ...)"
    if provider not in FUSED:
        return None
    if provider == "triton" and device.type == "cpu":
        return "Triton runs CPU tensors only in its interpreter (TRITON_INTERPRET=1), not a performance path"
    try:
        backend.resolve(case.kernel, device.type, provider)
    except RuntimeError as error:
        return str(error)
    return None


def provider_callables(case: Case, providers: Sequence[str], device: torch.device) -> dict[str, Callable]:
    """``inputs -> output`` of each provider that can run ``case``'s first variant on ``device``."""
    kwargs = case.variants[0].kwargs
    reference = functools.partial(case.baseline or case.reference, **kwargs)
    callables = {}
    for provider in providers:
        reason = unavailable_reason(case, provider, device)
        if reason is not None:
            note_unavailable(provider, case.name, device.type, reason)
        elif provider == "eager":
            callables[provider] = reference
        elif provider == "compile":
            callables[provider] = torch.compile(reference, fullgraph=True, dynamic=False)
        else:
            callables[provider] = functools.partial(case.op, **kwargs, backend=provider)
    return callables


def _step(fn: Callable, inputs: tuple[torch.Tensor, ...], grad_output: torch.Tensor | None) -> Callable[[], object]:
    """One timed call: the forward, or the forward and the gradients of the inputs that require grad."""
    if grad_output is None:
        return lambda: fn(*inputs)
    wrt = [t for t in inputs if t.requires_grad]
    return lambda: torch.autograd.grad(fn(*inputs), wrt, grad_output, allow_unused=True, materialize_grads=True)


def _mode_inputs(inputs: tuple[torch.Tensor, ...], mode: str) -> tuple[torch.Tensor, ...]:
    """The inputs, requiring grad for the backward where they are floating."""
    if mode == "forward":
        return inputs
    return grad_leaves(inputs)


def measure_case(
    case: Case,
    size: Size,
    dtype: torch.dtype,
    device: torch.device,
    providers: Sequence[str],
    modes: Sequence[str],
    min_run_time: float,
) -> list[Timing]:
    """Times every provider of ``case`` at ``size`` and ``dtype``, for each mode, the providers and the copy roofline
    taking turns (:func:`interleaved_seconds`)."""
    torch.compiler.reset()  # one compiled graph per case: no recompile limit across sizes and dtypes
    generator = make_generator(device)
    inputs = case.make_inputs(size, dtype, device, generator)
    callables = provider_callables(case, providers, device)
    timings = []
    for mode in modes:
        if mode != "forward" and not any(t.is_floating_point() for t in inputs):
            note(f"skipped {mode} for {case.name}: no floating input to differentiate")
            continue
        args = _mode_inputs(inputs, mode)
        output = case.reference(*args, **case.variants[0].kwargs)
        grad_output = (
            None
            if mode == "forward"
            else torch.randn(output.shape, dtype=output.dtype, device=device, generator=generator)
        )
        min_bytes = case.min_bytes(args, output, mode)
        flops = case.flops(args, output, mode) if case.flops is not None else None
        steps = {}
        for provider, fn in callables.items():
            step = _step(fn, args, grad_output)
            try:
                for _ in range(WARMUP_CALLS):  # compiles (torch.compile, Triton JIT) before timing
                    step()
            except Exception as error:  # e.g. no C++ compiler for torch.compile, a dtype inductor lacks
                first_line = str(error).partition("\n")[0]
                note(f"skipped {provider} for {case.name} {mode}: {type(error).__name__}: {first_line}")
                continue
            steps[provider] = step
        seconds = interleaved_seconds({**steps, COPY_STEP: copy_step(min_bytes, device)}, min_run_time, device)
        for provider, step in steps.items():
            timings.append(
                Timing(
                    case.name,
                    provider,
                    mode,
                    size,
                    dtype,
                    seconds[provider],
                    min_bytes,
                    seconds[COPY_STEP],
                    flops,
                    peak_memory_bytes(step, device),
                )
            )
    return timings
