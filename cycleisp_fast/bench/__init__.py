"""Kernel microbenchmarks (eager vs torch.compile vs fused, with the roofline) and the case registry that
the benchmarks and the selftest share.

- :mod:`~cycleisp_fast.bench.registry`: :class:`Case`, :class:`Variant` and the list of op modules;
- ``bayer.py`` (one module per op): the op's cases;
- :mod:`~cycleisp_fast.bench.measure`: timing, copy bandwidth and matmul rate;
- :mod:`~cycleisp_fast.bench.report`: table, CSV and plot;
- :mod:`~cycleisp_fast.bench.cli`: ``python -m cycleisp_fast.bench`` and ``cycleisp-fast bench``.
"""

from cycleisp_fast.bench.registry import Case, Variant, all_cases

__all__ = ["Case", "Variant", "all_cases"]
