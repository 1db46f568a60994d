"""One 3x3 convolution (stride 1, padding 1, float32, CPU, inference): oneDNN's direct convolution in NCHW and in
channels_last against Winograd F(4x4, 3x3) (``cycleisp_fast.ops.winograd``), with Winograd's error against the
exact (float64) convolution beside direct float32's; then the weight and bias gradients of a training batch
(oneDNN's ``convolution_backward`` in channels_last against ``winograd.weight_grad``), with their errors against
float64. The providers take turns within each round, and each row keeps the fastest of its rounds (this
project's 2 shared vCPUs are noisy).

    python scripts/bench_winograd.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from cycleisp_fast.ops import winograd

SHAPES = (  # (C, K, H = W): DenoiseNet's 64 -> 64 at 256x256, AINDNet's encoder/decoder widths, small channels
    (64, 64, 256),
    (32, 32, 256),
    (16, 16, 256),
    (64, 128, 128),
    (128, 128, 128),
    (256, 256, 64),
    (8, 8, 256),
)


def _relative_rms(y: torch.Tensor, exact: torch.Tensor) -> float:
    return ((y.double() - exact).square().mean().sqrt() / exact.square().mean().sqrt()).item()


def _fastest_ms(calls: dict, rounds: int) -> dict[str, float]:
    """Each call's fastest time in ms over ``rounds`` rounds, the calls taking turns within a round (after one
    warm-up call each)."""
    best = dict.fromkeys(calls, float("inf"))
    for call in calls.values():
        call()
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: seconds * 1e3 for name, seconds in best.items()}


HEADER = (
    "| C -> K | H x W | NCHW ms | channels_last ms | Winograd ms | vs NCHW | vs channels_last "
    "| error direct | error Winograd |\n|---|---|--:|--:|--:|--:|--:|--:|--:|"
)


def measure(c: int, k: int, size: int, rounds: int, generator: torch.Generator) -> str:
    """The table row of one convolution shape."""
    x = torch.randn(1, c, size, size, generator=generator)
    weight = torch.randn(k, c, 3, 3, generator=generator) / (3 * c**0.5)
    bias = torch.randn(k, generator=generator)
    x_last = x.contiguous(memory_format=torch.channels_last)
    transformed = winograd.transform_weight(weight)
    calls = {
        "nchw": lambda: F.conv2d(x, weight, bias, padding=1),
        "channels_last": lambda: F.conv2d(x_last, weight, bias, padding=1),
        "winograd": lambda: winograd.winograd_conv3x3(x_last, transformed, bias),
    }
    with torch.no_grad():
        ms = _fastest_ms(calls, rounds)
        exact = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
        direct_error = _relative_rms(calls["nchw"](), exact)
        winograd_error = _relative_rms(calls["winograd"](), exact)
    return (
        f"| {c} -> {k} | {size} x {size} | {ms['nchw']:.2f} | {ms['channels_last']:.2f} | {ms['winograd']:.2f} "
        f"| {ms['nchw'] / ms['winograd']:.2f}x | {ms['channels_last'] / ms['winograd']:.2f}x "
        f"| {direct_error:.1e} | {winograd_error:.1e} |"
    )


WEIGHT_GRAD_SHAPES = (  # (N, C, K, H = W): the networks' training convolutions at a 2 x 128 x 128 batch
    (2, 64, 64, 128),
    (2, 64, 128, 64),
    (2, 128, 128, 64),
    (2, 64, 256, 32),
    (2, 256, 256, 32),
    (2, 16, 16, 128),
)

WEIGHT_GRAD_HEADER = (
    "| N, C -> K | H x W | oneDNN ms | Winograd ms | speed-up | error oneDNN | error Winograd |\n"
    "|---|---|--:|--:|--:|--:|--:|"
)


def measure_weight_grad(n: int, c: int, k: int, size: int, rounds: int, generator: torch.Generator) -> str:
    """The table row of one weight gradient (error: relative RMS of the weight gradient against float64)."""
    x = torch.randn(n, c, size, size, generator=generator).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(n, k, size, size, generator=generator).contiguous(memory_format=torch.channels_last)
    weight = torch.empty(k, c, 3, 3)
    calls = {
        "onednn": lambda: torch.ops.aten.convolution_backward(
            grad, x, weight, [k], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, True]
        )[1:],
        "winograd": lambda: winograd.weight_grad(x, grad),
    }
    ms = _fastest_ms(calls, rounds)
    exact = torch.ops.aten.convolution_backward(
        grad.double(), x.double(), weight.double(), [k], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [False, True, True]
    )[1]
    errors = {name: _relative_rms(call()[0], exact) for name, call in calls.items()}
    return (
        f"| {n}, {c} -> {k} | {size} x {size} | {ms['onednn']:.2f} | {ms['winograd']:.2f} "
        f"| {ms['onednn'] / ms['winograd']:.2f}x | {errors['onednn']:.1e} | {errors['winograd']:.1e} |"
    )


def main() -> None:
    """Prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds of every provider (default: 7)")
    rounds = parser.parse_args().rounds
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(HEADER)
    generator = torch.Generator().manual_seed(0)
    for c, k, size in SHAPES:
        print(measure(c, k, size, rounds, generator))
    print("\nWeight and bias gradients (training):")
    print(WEIGHT_GRAD_HEADER)
    for n, c, k, size in WEIGHT_GRAD_SHAPES:
        print(measure_weight_grad(n, c, k, size, rounds, generator))


if __name__ == "__main__":
    main()
