"""A run's log, ``log.jsonl``: one JSON object per line, training ``{"step", "loss", "lr", "patches_per_s",
"time_s"}`` and validation ``{"step", "val_psnr", ...}`` records (:class:`JsonLog`, :func:`read_log`), the same
as TensorBoard event files under ``tensorboard/`` when the config asks for them (:class:`TensorBoardLog`), and the
one-line summary of validation metrics (:func:`format_metrics`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from cycleisp_fast.data.files import atomic_path

LOG_NAME = "log.jsonl"
TENSORBOARD_DIR = "tensorboard"


class JsonLog:
    """``log.jsonl``: one JSON object per line, appended (and flushed) as training goes."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def write(self, record: dict[str, Any]) -> None:
        """Appends ``record`` as one JSON line (nothing when the log is disabled, as on ranks other than 0)."""
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as file:
                file.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drops the records past ``step`` (written after the checkpoint a resumed run restarts from) and any torn
        last line, rewriting the file atomically."""
        if not self.enabled or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line + "\n")
        with atomic_path(self.path) as temporary:
            temporary.write_text("".join(kept), encoding="utf-8")


def read_log(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a run folder's ``log.jsonl``."""
    path = Path(run_dir) / LOG_NAME
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def format_metrics(metrics: dict[str, float]) -> str:
    """``"psnr 31.20 dB (noisy input 24.10 dB, +7.10 dB), ssim 0.9100 (noisy input 0.6500)"`` and any other
    metrics."""
    if not metrics:
        return "no validation"
    parts = [f"psnr {metrics['psnr']:.2f} dB"]
    if "psnr_input" in metrics:
        parts[0] += f" (noisy input {metrics['psnr_input']:.2f} dB, {metrics['psnr'] - metrics['psnr_input']:+.2f} dB)"
    if "ssim" in metrics:
        parts.append(
            f"ssim {metrics['ssim']:.4f}" + (f" (noisy input {metrics['ssim_input']:.4f})" * ("ssim_input" in metrics))
        )
    shown = ("psnr", "psnr_input", "ssim", "ssim_input")
    parts += [f"{name} {value:.4g}" for name, value in metrics.items() if name not in shown]
    return ", ".join(parts)


class TensorBoardLog:
    """TensorBoard event files in ``RUN/tensorboard`` (``tensorboard --logdir RUN``): the training records as
    ``train/loss``, ``train/lr``, ``train/patches_per_s``, the validation metrics as ``val/<name>`` and the task's
    preview images. A resumed run drops the events past its checkpoint (``purge_step``), as the JSON log does.

    Args:
        run_dir: the run folder.
        enabled: write (rank 0 with ``tensorboard = true``); otherwise every call does nothing.
        start: the step the run (re)starts from.
    """

    def __init__(self, run_dir: Path, enabled: bool, start: int):
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise ImportError(
                    "tensorboard = true needs the tensorboard package: pip install tensorboard"
                ) from error
            self.writer = SummaryWriter(run_dir / TENSORBOARD_DIR, purge_step=start + 1 if start else None)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        """``prefix/name`` = value at ``step`` for each entry."""
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def images(self, tag: str, images: Any, step: int) -> None:
        """An ``(n, 3, H, W)`` batch of images in [0, 1] at ``step``, one above the other in one image (nothing when
        ``images`` is None)."""
        if self.writer is not None and images is not None:
            self.writer.add_image(tag, torch.cat(list(images.float().cpu()), dim=1), step)

    def close(self) -> None:
        """Flushes and closes the event file."""
        if self.writer is not None:
            self.writer.close()
