"""The benchmarks' memory column on the CPU (``bench.measure.peak_memory_bytes``): the peak of the bytes torch's
allocator holds during a step, beyond what was held before, against steps whose allocations are known."""

from __future__ import annotations

import torch

from cycleisp_fast.bench.measure import peak_memory_bytes

MIB = 1 << 20
CPU = torch.device("cpu")


def test_the_peak_is_the_largest_sum_of_live_allocations():
    kept = []

    def step():
        a = torch.ones(4 * MIB, dtype=torch.uint8)  # 4 MiB
        b = torch.ones(8 * MIB, dtype=torch.uint8)  # 12 MiB live: the peak
        del a, b
        kept.append(torch.ones(2 * MIB, dtype=torch.uint8))  # 2 MiB live at the end, below the peak

    assert peak_memory_bytes(step, CPU) == 12 * MIB


def test_memory_held_before_the_step_is_not_counted_nor_are_its_frees():
    """Frees of memory allocated before the step have no size the profiler knows: the peak is that of the step's
    own allocations (an upper bound by what the step frees of older memory, such as the previous gradients)."""
    before = [torch.ones(16 * MIB, dtype=torch.uint8)]

    def step():
        before.clear()
        torch.ones(10 * MIB, dtype=torch.uint8)

    assert peak_memory_bytes(step, CPU) == 10 * MIB
    assert peak_memory_bytes(lambda: torch.ones(3 * MIB, dtype=torch.uint8), CPU) == 3 * MIB
