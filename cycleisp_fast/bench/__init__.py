"""Kernel microbenchmarks (eager vs torch.compile vs fused, with the roofline) of the cases of
:mod:`cycleisp_fast.cases` (the case registry the benchmarks, the selftest and the op tests share).

- :mod:`~cycleisp_fast.bench.measure`: timing, copy bandwidth and matmul rate;
- :mod:`~cycleisp_fast.bench.report`: table, CSV and plot;
- :mod:`~cycleisp_fast.bench.cli`: ``python -m cycleisp_fast.bench`` and ``cycleisp-fast bench``.
"""

from cycleisp_fast.cases import Case, Variant, all_cases

__all__ = ["Case", "Variant", "all_cases"]
