"""The benchmark's outputs: one row of numbers per timing, a markdown table, a CSV and a bar plot.

Every ratio compares timings of the same run: speedups against ``eager`` and ``compile`` of the same case,
mode, size and dtype; the copy roofline is a copy of the same number of bytes (so both see the same
caches), and the FLOP roofline the fp32 matmul rate, both measured in that run.
"""

from __future__ import annotations

import csv
import os
import platform
from typing import Callable, Mapping, Sequence

import torch

from cycleisp_fast.bench.measure import COPY_BYTES, Rates, Timing

COLUMNS = (
    "case",
    "mode",
    "size",
    "dtype",
    "device",
    "provider",
    "time_ms",
    "speedup_vs_eager",
    "speedup_vs_compile",
    "min_bytes",
    "gb_per_s",
    "copy_gb_per_s",
    "copy_fraction",
    "flops",
    "gflop_per_s",
    "matmul_gflop_per_s",
    "matmul_fraction",
    "peak_bytes",
    "peak_vs_eager",
    "psnr_vs_eager_db",
    "device_name",
    "torch_version",
)
"""The CSV's columns, one row per case, provider, mode, size, dtype and device."""

Row = dict[str, object]


def format_size(size: Sequence[int]) -> str:
    """``(4, 1, 1024, 1024)`` -> ``"4x1x1024x1024"``, the form ``--sizes`` takes."""
    return "x".join(str(extent) for extent in size)


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``, the form ``--dtypes`` takes."""
    return str(dtype).removeprefix("torch.")


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    except OSError:
        models = []
    return models[0] if models else platform.processor() or platform.machine()


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or denominator is None else numerator / denominator


def make_rows(timings: Sequence[Timing], rates: Rates, device: torch.device) -> list[Row]:
    """One CSV row (:data:`COLUMNS`) per timing: speedups, achieved rates and roofline fractions."""
    baselines = {(t.case, t.mode, t.size, t.dtype, t.provider): t.seconds for t in timings}
    peaks = {(t.case, t.mode, t.size, t.dtype, t.provider): t.peak_bytes for t in timings}
    name = device_name(device)
    rows = []
    for t in timings:
        group = (t.case, t.mode, t.size, t.dtype)
        gb_per_s = t.min_bytes / t.seconds / 1e9
        gflop_per_s = None if t.flops is None else t.flops / t.seconds / 1e9
        rows.append(
            {
                "case": t.case,
                "mode": t.mode,
                "size": format_size(t.size),
                "dtype": dtype_name(t.dtype),
                "device": device.type,
                "provider": t.provider,
                "time_ms": t.seconds * 1e3,
                "speedup_vs_eager": _ratio(baselines.get((*group, "eager")), t.seconds),
                "speedup_vs_compile": _ratio(baselines.get((*group, "compile")), t.seconds),
                "min_bytes": t.min_bytes,
                "gb_per_s": gb_per_s,
                "copy_gb_per_s": t.min_bytes / t.copy_seconds / 1e9,
                "copy_fraction": t.copy_seconds / t.seconds,
                "flops": t.flops,
                "gflop_per_s": gflop_per_s,
                "matmul_gflop_per_s": rates.matmul_gflop_per_s,
                "matmul_fraction": _ratio(gflop_per_s, rates.matmul_gflop_per_s),
                "peak_bytes": t.peak_bytes,
                "peak_vs_eager": _ratio(t.peak_bytes, peaks.get((*group, "eager")) or None),
                "psnr_vs_eager_db": t.psnr_vs_eager,
                "device_name": name,
                "torch_version": torch.__version__,
            }
        )
    return rows


def _number(spec: str, suffix: str = "", scale: float = 1.0) -> Callable[[object], str]:
    """A cell formatter: ``None`` -> ``"-"``, else ``value * scale`` in ``spec`` followed by ``suffix``."""
    return lambda value: "-" if value is None else f"{value * scale:{spec}}{suffix}"


TABLE_COLUMNS = (
    ("case", "case", str),
    ("mode", "mode", str),
    ("size", "size", str),
    ("dtype", "dtype", str),
    ("provider", "provider", str),
    ("time (ms)", "time_ms", _number(".4g")),
    ("vs eager", "speedup_vs_eager", _number(".2f", "x")),
    ("vs compile", "speedup_vs_compile", _number(".2f", "x")),
    ("GB/s", "gb_per_s", _number(".1f")),
    ("copy GB/s", "copy_gb_per_s", _number(".1f")),
    ("% copy", "copy_fraction", _number(".0f", "%", 100)),
    ("peak MiB", "peak_bytes", _number(".1f", "", 2**-20)),
    ("mem vs eager", "peak_vs_eager", _number(".0f", "%", 100)),
)
FLOP_COLUMNS = (("GFLOP/s", "gflop_per_s", _number(".1f")), ("% matmul", "matmul_fraction", _number(".0f", "%", 100)))
PSNR_COLUMNS = (("PSNR vs eager", "psnr_vs_eager_db", _number(".1f", " dB")),)
TEXT_COLUMNS = 5
"""The first columns hold text (left-aligned), the others numbers (right-aligned)."""


def markdown_table(cells: Sequence[Sequence[str]], text_columns: int | None = None) -> list[str]:
    """The lines of a markdown pipe table, header ``cells[0]``, every column padded to one width.

    Columns from index ``text_columns`` on hold numbers and are right-aligned (all are left-aligned if None).
    """
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    numeric = [text_columns is not None and i >= text_columns for i in range(len(widths))]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, numeric)) + " |"

    rule = ["-" * (w - 1) + ":" if r else "-" * w for w, r in zip(widths, numeric)]
    return [line(cells[0]), line(rule)] + [line(values) for values in cells[1:]]


def format_table(rows: Sequence[Row], rates: Rates) -> str:
    """A markdown pipe table of ``rows`` (at least one), under a line naming the machine and its rates."""
    columns = TABLE_COLUMNS + (FLOP_COLUMNS if any(row["flops"] is not None for row in rows) else ())
    columns += PSNR_COLUMNS if any(row["psnr_vs_eager_db"] is not None for row in rows) else ()
    cells = [[header for header, _, _ in columns]] + [[fmt(row[key]) for _, key, fmt in columns] for row in rows]
    rates_text = f"copy bandwidth {rates.copy_gb_per_s:.1f} GB/s (2 x {COPY_BYTES >> 20} MiB)"
    if rates.matmul_gflop_per_s is not None:
        rates_text += f", fp32 matmul {rates.matmul_gflop_per_s:.1f} GFLOP/s"
    first = rows[0]
    header = f"{first['device_name']} ({first['device']}), torch {first['torch_version']}: {rates_text}"
    table = [header, ""] + markdown_table(cells, TEXT_COLUMNS)
    table.append(
        "\nGB/s: the op's minimum bytes (inputs read once, outputs written once) over its time. copy GB/s "
        "and % copy: the roofline, a copy of those same bytes timed in the same run. peak MiB: the memory a call "
        "allocates at its peak beyond its inputs (saved activations, outputs, gradients, scratch)."
    )
    return "\n".join(table)


def write_csv(rows: Sequence[Row], path: str) -> None:
    """Writes ``rows`` to ``path`` (:data:`COLUMNS`; empty cells where a number does not apply)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)


PANEL_COLUMNS = 2
BAR_INCHES = 0.2  # height of one bar in the plot


def _bar_label(row: Row) -> str:
    """``3.2x`` (speedup vs eager), ``· 1.6x vs compile`` for a fused provider, and ``· 41% roof`` (of the
    roofline: a copy of the same bytes)."""
    label = f"{row['speedup_vs_eager']:.2g}x"
    if row["provider"] not in ("eager", "compile") and row["speedup_vs_compile"]:
        label += f" · {row['speedup_vs_compile']:.2g}x vs compile"
    return label + f" · {100 * row['copy_fraction']:.0f}% roof"


def write_plot(rows: Sequence[Row], path: str, families: Mapping[str, str] | None = None) -> bool:
    """The benchmark as small multiples, one panel per op family (``families``: case -> family, e.g.
    :func:`cycleisp_fast.cases.case_families`; else one panel per case). Per timed (case, mode, size, dtype), one
    horizontal bar per provider other than eager, its length the speedup over eager PyTorch on a log scale (the
    line at 1x is eager), the value written beside it with the speedup over ``torch.compile`` for the fused
    providers and the percent of the roofline (a copy of the same bytes). Readable at 100 % zoom (1400 pixels
    wide).

    Returns False (and says so) when matplotlib is missing.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        print("plot skipped: matplotlib is not installed (pip install 'cycleisp_fast[bench]')")
        return False
    families = families or {}
    timed = [row for row in rows if row["provider"] != "eager" and row["speedup_vs_eager"]]
    providers = list(dict.fromkeys(row["provider"] for row in timed))
    colours = {provider: f"C{k}" for k, provider in enumerate(providers)}
    panels: dict[str, list[Row]] = {}
    for row in timed:
        panels.setdefault(families.get(row["case"], row["case"]), []).append(row)
    columns = max(1, min(PANEL_COLUMNS, len(panels)))
    grid_rows = max(1, -(-len(panels) // columns))
    names = list(panels)
    heights = [
        1.0 + BAR_INCHES * max(len(panels[name]) * 1.3 for name in names[r * columns : (r + 1) * columns])
        for r in range(grid_rows)
    ] or [1.0]
    figure = Figure(figsize=(14.0, 0.8 + sum(heights)), layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(grid_rows, columns, height_ratios=heights)
    values = [row["speedup_vs_eager"] for row in timed] or [1.0]
    limits = (min(values + [0.5]) / 1.5, max(values + [2.0]) * 30)
    for k, (family, panel_rows) in enumerate(panels.items()):
        axes = figure.add_subplot(grid[k // columns, k % columns])
        groups = list(dict.fromkeys((r["case"], r["mode"], r["size"], r["dtype"]) for r in panel_rows))
        y, ticks = 0.0, []
        for group in groups:  # top to bottom: one cluster of bars per group, a gap between clusters
            members = [r for r in panel_rows if (r["case"], r["mode"], r["size"], r["dtype"]) == group]
            start = y
            for row in members:
                axes.barh(-y, row["speedup_vs_eager"], color=colours[row["provider"]], height=0.85)
                axes.text(row["speedup_vs_eager"] * 1.06, -y, _bar_label(row), va="center", fontsize=8)
                y += 1
            ticks.append((-(start + y - 1) / 2, f"{group[0]}\n{group[1]} {group[2]} {group[3]}"))
            y += 0.6
        axes.set_xscale("log")
        axes.set_xlim(*limits)
        axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}x"))
        axes.axvline(1.0, color="black", linewidth=1.0)
        axes.set_yticks([t for t, _ in ticks], [label for _, label in ticks], fontsize=8)
        axes.set_ylim(-y + 0.3, 0.9)
        axes.set_title(family, fontsize=11, loc="left", fontweight="bold")
        axes.set_xlabel("speedup over eager PyTorch (log scale; the line is eager)", fontsize=8)
        axes.tick_params(axis="x", labelsize=8)
    if timed:
        figure.legend(
            [Patch(color=colours[p]) for p in providers], providers, loc="outside upper right", ncols=len(providers)
        )
    first = rows[0]
    figure.suptitle(
        f"cycleisp_fast kernels on {first['device_name']} ({first['device']}), torch {first['torch_version']}",
        fontsize=13,
        x=0.01,
        ha="left",
    )
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, dpi=100)
    return True
