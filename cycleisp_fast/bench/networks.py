"""Timing of whole networks as users run them: inference and a training step, per provider.

Modes of a network case (the op cases' mode names, with a network's meaning):

- ``forward``: inference, ``model(image)`` under ``torch.no_grad`` (``model.eval()``) at the case's size, on a
  noisy photo (:func:`noisy_photo`); the table's ``PSNR vs eager`` is each provider's output against eager's;
- ``forward+backward``: one training step, ``zero_grad``, L1 loss against a clean target, ``backward`` and an
  ``Adam`` step, at the case's training batch (``Case.train_sizes``, per device type).

Providers: ``eager`` the network on the reference backend (the official computation, NCHW); ``compile`` that
network under ``torch.compile`` with the settings :func:`cycleisp_fast.optimize` gives itself (freezing for
inference, CUDA graphs on a GPU); ``native`` / ``triton`` the network on the fused backend (channels_last on
the CPU where the case says so); ``optimized`` what :func:`cycleisp_fast.optimize` returns, ``optimized-bf16``
the same with ``precision="bfloat16"``. Every provider gets the same weights (one seeded official
initialisation: no trained weights are at hand offline, so the PSNR measures the arithmetic, not a denoising
quality) and the same inputs.
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cycleisp_fast.bench.measure import (
    COPY_STEP,
    Timing,
    copy_step,
    interleaved_seconds,
    note,
    note_unavailable,
    peak_memory_bytes,
    unavailable_reason,
)
from cycleisp_fast.cases import Case, Size, io_bytes, make_generator
from cycleisp_fast.cases.models import model_inputs
from cycleisp_fast.data.samples import sample_images
from cycleisp_fast.optimization import compile_settings, optimize
from cycleisp_fast.pipelines.metrics import psnr

NOISE_STD = 0.1
"""The Gaussian noise on the benchmark photo."""
NETWORK_WARMUP_CALLS = 2
"""Calls before timing a network (the first compiles; a second settles the caches)."""
LEARNING_RATE = 1e-4


def _provider_model(case: Case, provider: str, reference: nn.Module, inference: bool) -> nn.Module:
    """The module that ``provider`` runs, holding a copy of ``reference``'s weights."""
    device = next(reference.parameters()).device
    model = copy.deepcopy(reference)
    if provider == "eager":
        return model
    if provider == "compile":
        return torch.compile(model, **compile_settings(inference, device))
    if provider in ("optimized", "optimized-bf16"):
        return optimize(model, inference=inference, precision="bfloat16" if provider.endswith("bf16") else "float32")
    fused = case.network.build(provider).to(device=device, dtype=next(reference.parameters()).dtype)
    fused.load_state_dict(reference.state_dict())
    fused.train(not inference)
    if case.network.channels_last and device.type == "cpu":
        fused.to(memory_format=torch.channels_last)
    return fused


def noisy_photo(shape: Size, dtype: torch.dtype, device: torch.device, generator: torch.Generator) -> torch.Tensor:
    """``shape = (N, C, H, W)``, C 3 or 4: the embedded astronaut photo (tiled to ``H x W``; for C = 4 its
    planes R, G, G, B) plus Gaussian noise of std :data:`NOISE_STD`, clipped to [0, 1]."""
    n, channels, height, width = shape
    photo = sample_images("astronaut")["astronaut"]
    photo = photo.repeat(1, -(-height // photo.shape[1]), -(-width // photo.shape[2]))[:, :height, :width]
    if channels == 4:
        photo = photo[[0, 1, 1, 2]]
    clean = photo.to(device=device, dtype=dtype).expand(n, -1, -1, -1)
    noise = torch.randn(clean.shape, dtype=dtype, device=device, generator=generator)
    return (clean + NOISE_STD * noise).clamp(0, 1)


def _inference_step(model: Callable, inputs: tuple[torch.Tensor, ...]) -> Callable[[], object]:
    def step():
        with torch.no_grad():
            return model(*inputs)

    return step


def _training_step(model: Callable, parameters, inputs: tuple[torch.Tensor, ...], target) -> Callable[[], object]:
    optimizer = torch.optim.Adam(parameters, lr=LEARNING_RATE)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.l1_loss(model(*inputs), target)
        loss.backward()
        optimizer.step()
        return loss

    return step


def measure_network(
    case: Case,
    size: Size,
    dtype: torch.dtype,
    device: torch.device,
    providers: Sequence[str],
    modes: Sequence[str],
    min_run_time: float,
    train_size: Size | None = None,
) -> list[Timing]:
    """Times every provider of the network ``case``: inference at ``size``, a training step at ``train_size``
    (default: the case's training batch on ``device``); each provider on its own copy of the same weights, the
    providers and the copy roofline taking turns (:func:`~cycleisp_fast.bench.measure.interleaved_seconds`; every
    provider's model is kept until its mode is timed), then each one's peak memory alone."""
    timings = []
    for mode in modes:
        torch.compiler.reset()
        inference = mode == "forward"
        shape = size if inference else tuple(train_size or case.train_sizes[device.type])
        generator = make_generator(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator, device=device)))
            reference = case.network.build("reference")
        reference = reference.to(device=device, dtype=dtype).train(not inference)
        image = noisy_photo(shape, dtype, device, generator)
        inputs = model_inputs(image, case.network.raw)
        target = torch.rand(shape, dtype=dtype, device=device, generator=generator)
        with torch.no_grad():
            output = reference.eval()(*inputs)
        reference.train(not inference)
        min_bytes = io_bytes((image,), output, "forward")
        flops = case.flops((image,), output, mode) if case.flops is not None else None
        models, steps = {}, {}
        for provider in providers:
            reason = unavailable_reason(case, provider, device)
            if reason is not None:
                note_unavailable(provider, case.name, device.type, reason)
                continue
            note(f"  {provider} {mode} {'x'.join(map(str, shape))}")
            model = _provider_model(case, provider, reference, inference)
            if inference:
                step = _inference_step(model, inputs)
            else:
                step = _training_step(model, model.parameters(), inputs, target)
            try:
                for _ in range(NETWORK_WARMUP_CALLS):
                    step()
            except Exception as error:  # e.g. no C++ compiler for torch.compile
                first_line = str(error).partition("\n")[0]
                note(f"skipped {provider} for {case.name} {mode}: {type(error).__name__}: {first_line}")
                continue
            models[provider], steps[provider] = model, step
        seconds = interleaved_seconds({**steps, COPY_STEP: copy_step(min_bytes, device)}, min_run_time, device)
        for provider, step in steps.items():
            fidelity = float(psnr(step().float(), output.float()).min()) if inference else None
            if not inference:
                # The step's zero_grad frees the last gradients first thing; freed here, so that the memory
                # measure (which sees no size for memory allocated before it started) does not count them twice.
                models[provider].zero_grad(set_to_none=True)
            timings.append(
                Timing(
                    *(case.name, provider, mode, shape, dtype, seconds[provider], min_bytes, seconds[COPY_STEP]),
                    flops,
                    peak_memory_bytes(step, device),
                    fidelity,
                )
            )
        del models, steps
    return timings
