"""The curves of a run, from its ``log.jsonl``, as one PNG (``cycleisp-fast train --plot RUN``), for people
without TensorBoard: the training loss (log scale), the learning rate and every validation metric, against the
step.

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
    figure = Figure(figsize=(12, 3.6), dpi=110, layout="constrained")
    loss, lr, val = figure.subplots(1, 3)
    steps = [record["step"] for record in training]
    loss.plot(steps, [record["loss"] for record in training], color="tab:blue")
    loss.set(title="training loss", xlabel="step", yscale="log")
    lr.plot(steps, [record["lr"] for record in training], color="tab:orange")
    lr.set(title="learning rate", xlabel="step")
    for name in metrics:
        points = [(record["step"], record[name]) for record in validation if name in record]
        val.plot(*zip(*points), marker="o", label=name.removeprefix("val_"))
    val.set(title="validation" if metrics else "validation (none logged)", xlabel="step")
    if metrics:
        val.legend()
    for axes in (loss, lr, val):
        axes.grid(alpha=0.3)
    figure.suptitle(f"{run_dir} ({len(training)} log records, last step {steps[-1]})")
    output = run_dir / PLOT_NAME if output is None else Path(output)
    with atomic_path(output) as temporary:
        FigureCanvasAgg(figure).print_png(temporary)
    return output
