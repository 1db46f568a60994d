"""The curves of a run, from its ``log.jsonl``, as one PNG (``cycleisp-fast train --plot RUN``), for people
without TensorBoard: the training loss (log scale), the learning rate and one panel per validation metric (the
model's output beside the noisy input's), against the step.

Example:
    >>> plot_run("runs/demo")  # doctest: +SKIP
    PosixPath('runs/demo/curves.png')
"""

from __future__ import annotations

import os
from pathlib import Path

from cycleisp_fast.data.files import atomic_path
from cycleisp_fast.training.logs import LOG_NAME, read_log

PLOT_NAME = "curves.png"


def plot_run(run_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Draws the run's loss, learning rate and validation metrics into ``output`` (default ``RUN/curves.png``).

    Raises:
        FileNotFoundError: the folder has no ``log.jsonl``.
        ValueError: the log holds no training record yet.
        ImportError: matplotlib is missing.
    """
    run_dir = Path(run_dir)
    if not (run_dir / LOG_NAME).is_file():
        raise FileNotFoundError(f"{run_dir} has no {LOG_NAME}: not a run folder of cycleisp-fast train")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ImportError("plotting needs matplotlib: pip install 'cycleisp_fast[bench]'") from error
    records = read_log(run_dir)
    training = [record for record in records if "loss" in record]
    if not training:
        raise ValueError(f"{run_dir / LOG_NAME} holds no training record yet")
    validation = [record for record in records if any(key.startswith("val_") for key in record)]
    metrics = sorted({key for record in validation for key in record if key.startswith("val_")})
    # one panel per validation metric, beside its value on the noisy input (val_psnr with val_psnr_input): dB and
    # SSIM have their own scales
    kinds = list(dict.fromkeys(name.removeprefix("val_").removesuffix("_input") for name in metrics)) or ["none"]
    figure = Figure(figsize=(4 * (2 + len(kinds)), 3.6), dpi=110, layout="constrained")
    loss, lr, *panels = figure.subplots(1, 2 + len(kinds))
    steps = [record["step"] for record in training]
    loss.plot(steps, [record["loss"] for record in training], color="tab:blue")
    loss.set(title="training loss", xlabel="step", yscale="log")
    lr.plot(steps, [record["lr"] for record in training], color="tab:orange")
    lr.set(title="learning rate", xlabel="step")
    for kind, panel in zip(kinds, panels):
        for name, label in ((f"val_{kind}", "output"), (f"val_{kind}_input", "noisy input")):
            points = [(record["step"], record[name]) for record in validation if name in record]
            if points:
                panel.plot(*zip(*points), marker="o", label=label)
        unit = " (dB)" if kind == "psnr" else ""
        panel.set(title=f"validation {kind}{unit}" if metrics else "validation (none logged)", xlabel="step")
        if metrics:
            panel.legend()
    for axes in (loss, lr, *panels):
        axes.grid(alpha=0.3)
    figure.suptitle(f"{run_dir} ({len(training)} log records, last step {steps[-1]})")
    output = run_dir / PLOT_NAME if output is None else Path(output)
    with atomic_path(output) as temporary:
        FigureCanvasAgg(figure).print_png(temporary)
    return output
