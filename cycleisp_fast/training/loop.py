"""The training loop of every recipe (:mod:`cycleisp_fast.training.tasks`), single process or
``torchrun`` + DDP, resumable bit for bit.

A run folder holds ``config.toml`` (the resolved config), ``last.pt`` (the latest checkpoint, replaced
atomically every ``save_every`` steps and at the end), ``log.jsonl`` (one JSON object per log line: training
``{"step", "loss", "lr", "patches_per_s", "time_s"}`` and validation ``{"step", "val_psnr", ...}``) and, for
the ISP tasks, each network's weights in the official layout under the official names (``rgb2raw_joint.pth``,
``ccm_joint.pth``, ``raw2rgb_joint.pth``): a folder that ``data.isp_weights`` and ``synth --weights`` take.

Checkpoints are dicts ``{"model", "model_kwargs", "state_dict", "optimizer", "scheduler", "scaler", "step",
"config", "rng"}`` (and ``"ema_state_dict"`` with ``ema_decay``): see :mod:`cycleisp_fast.training.checkpoints`;
the log, :mod:`cycleisp_fast.training.logs`.

Determinism: step ``s`` of rank ``r`` trains on patches ``(s * world + r) * batch_size ...`` of a seeded dataset,
with noise keyed by ``(seed, s * world + r)``, under a learning rate that is a closed-form function of ``s``: a
resumed run retraces the uninterrupted one exactly (on the CPU; GPU kernels may not be bitwise deterministic).

Distributed: when ``WORLD_SIZE`` > 1 (``torchrun``), the process group is initialised (NCCL on CUDA, Gloo on the
CPU), each process takes GPU ``LOCAL_RANK``, gradients are averaged by DDP, and only rank 0 validates and writes
(:mod:`cycleisp_fast.training.distributed`).
SIGTERM or SIGUSR1 (what Slurm sends before it ends or requeues a job) make every rank finish its step, write the
checkpoint and return (``TrainResult.stopped_by``); ``cycleisp-fast train --auto-resume`` then continues.
Mixed precision (``amp = "bf16" | "fp16"``) runs on CUDA only; on the CPU it is ignored with a warning, so that one
config serves both.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from cycleisp_fast.data.files import atomic_path, describe_read_error, save_torch
from cycleisp_fast.data.locks import run_folder_lock
from cycleisp_fast.training.checkpoints import CHECKPOINT_NAME, RunFolderError, load_checkpoint
from cycleisp_fast.training.config import config_differences, config_to_toml, resolve_config
from cycleisp_fast.training.distributed import (
    Distributed,
    StepBatches,
    distributed_from_environment,
    process_group,
    select_device,
    stop_requested,
    stop_signals,
)
from cycleisp_fast.training.logs import LOG_NAME, JsonLog, TensorBoardLog, format_metrics
from cycleisp_fast.training.optim import WeightAverage, averaged_weights, lr_factor, make_optimizer
from cycleisp_fast.training.tasks import Task, make_task

CONFIG_NAME = "config.toml"


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` in bf16/fp16 on CUDA; nothing for ``"off"`` or on the CPU."""
    if amp == "off" or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


@dataclass
class TrainResult:
    """What a call of :func:`train` did: the run folder, the global step reached, the checkpoint written, the
    trained network (this process's copy, on the training device), the last validation metrics
    (``{"psnr": ..., "psnr_input": ...}``; empty on ranks other than 0) and the signal that stopped the run early
    (its name, e.g. ``"SIGTERM"``; None when it ran to its end)."""

    run_dir: Path
    step: int
    checkpoint: Path
    network: torch.nn.Module
    metrics: dict[str, float] = field(default_factory=dict)
    stopped_by: str | None = None


def _resume_state(run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    path = run_dir / CHECKPOINT_NAME
    if not path.is_file():
        raise RunFolderError(f"nothing to resume in {run_dir}: it has no {CHECKPOINT_NAME}")
    checkpoint = load_checkpoint(path)
    try:  # a checkpoint of an earlier version lacks the keys added since: their defaults are what it ran with
        saved = resolve_config(checkpoint["config"])
    except ValueError:
        saved = checkpoint["config"]
    differences = config_differences(saved, config)
    if differences:
        raise RunFolderError(
            f"cannot resume {path}: the config differs from the one it was trained with: " + "; ".join(differences)
        )
    return checkpoint


def _validate(
    task: Task, ema: WeightAverage | None = None, *, preview: bool = False
) -> tuple[dict[str, float], torch.Tensor | None]:
    """``(metrics, images)``: the task's metrics averaged over its validation batches, weighted by their sizes, and
    with ``preview`` its preview images of the first batch (else None); on the EMA weights when there is an average.
    ``({}, None)`` without validation batches."""
    batches = task.validation_batches()
    if not batches:
        return {}, None
    with averaged_weights(ema, task.network):
        metrics = _mean_metrics(task, batches)
        images = None
        if preview:
            task.network.eval()
            with torch.no_grad():
                images = task.preview(batches[0])
            task.network.train()
    return metrics, images


def _mean_metrics(task: Task, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    task.network.eval()
    totals: dict[str, float] = {}
    count = 0
    with torch.no_grad():
        for batch in batches:
            size = next(iter(batch.values())).shape[0]
            for name, value in task.metrics(batch).items():
                totals[name] = totals.get(name, 0.0) + value * size
            count += size
    task.network.train()
    return {name: total / count for name, total in totals.items()}


def train(
    config: dict[str, Any],
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    device: str | torch.device | None = None,
    stop_after: int | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Trains ``config`` (resolved, :func:`~cycleisp_fast.training.config.load_config`) into ``run_dir``.

    Args:
        config: the resolved config, as :func:`~cycleisp_fast.training.config.load_config` returns it.
        run_dir: the run folder: ``config.toml``, ``last.pt`` and ``log.jsonl`` go there (rank 0 locks it).
        resume: continue from ``run_dir/last.pt`` (its config must equal ``config`` up to the logging cadences);
            without it, a run folder that already holds a checkpoint is an error.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:<i>"`` or None/``"auto"`` (see :func:`select_device`).
        stop_after: stop once this global step is done (checkpoint written), as if interrupted there; the
            schedule still spans ``steps``. None: train to ``steps``.
        progress: show a tqdm bar (loss, patches/s); None: when stderr is a terminal. Never on ranks > 0.

    Runs under ``torchrun`` as it is: see the module docstring. Raises ``ConfigError`` (bad data or init
    weights) or :class:`RunFolderError` before the first step.
    """
    place = distributed_from_environment()
    device = select_device(device, place)
    run_dir = Path(run_dir)
    stop = config["steps"] if stop_after is None else stop_after
    if not isinstance(stop, int) or isinstance(stop, bool) or not 0 < stop <= config["steps"]:
        raise ValueError(f"stop_after must be a step in 1..{config['steps']} (steps), got {stop_after!r}")
    # Rank 0 owns the folder for the whole run (the other ranks write nothing into it); see data/locks.py.
    with run_folder_lock(run_dir, "train") if place.is_main else contextlib.nullcontext():
        checkpoint_path = run_dir / CHECKPOINT_NAME
        if not resume and checkpoint_path.exists():
            raise RunFolderError(
                f"{run_dir} already holds a run ({CHECKPOINT_NAME}): resume it (--resume) or choose "
                "another output folder"
            )
        state = _resume_state(run_dir, config) if resume else None
        if state is not None and state["step"] >= stop:
            raise RunFolderError(
                f"{checkpoint_path} is already at step {state['step']}: nothing left to train up to step {stop}"
            )
        if config["amp"] != "off" and device.type != "cuda":
            warnings.warn(f"amp = {config['amp']!r} runs on CUDA only: training in float32 on {device}", stacklevel=2)
        with process_group(device, place):
            return _train(config, run_dir, state, device, place, stop, progress)


def _train(
    config: dict[str, Any],
    run_dir: Path,
    state: dict[str, Any] | None,
    device: torch.device,
    place: Distributed,
    stop: int,
    progress: bool | None,
) -> TrainResult:
    torch.manual_seed(config["seed"])
    task = make_task(config, device)
    network = task.network.to(device)
    parameters = [p for p in network.parameters() if p.requires_grad]
    optimizer = make_optimizer(parameters, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    scaler = torch.amp.GradScaler("cuda", enabled=config["amp"] == "fp16" and device.type == "cuda")
    ema = WeightAverage(network, config["ema_decay"]) if config["ema_decay"] > 0 else None
    start = 0
    log = JsonLog(run_dir / LOG_NAME, place.is_main)
    if state is not None:
        try:
            network.load_state_dict(state["state_dict"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            if ema is not None:
                ema.load_state_dict(state["ema_state_dict"])
            torch.set_rng_state(state["rng"]["torch"])
            if device.type == "cuda" and "cuda" in state["rng"]:
                torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as error:
            raise RunFolderError(
                f"{run_dir / CHECKPOINT_NAME} cannot be resumed: its saved state does not fit the "
                f"run ({describe_read_error(error)})"
            ) from error
        start = state["step"]
        log.truncate_after(start)
    elif place.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(run_dir / CONFIG_NAME) as temporary:
            temporary.write_text(config_to_toml(config), encoding="utf-8")
        log.truncate_after(0)  # a fresh run: no records (a crashed run may have left some before its first save)
    board = TensorBoardLog(run_dir, place.is_main and config["tensorboard"], start)
    module = network
    if place.world_size > 1:
        module = DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)

    batch_size = config["batch_size"]
    dataset = task.dataset(config["steps"] * place.world_size * batch_size)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=StepBatches(start, stop, batch_size, place),
        num_workers=config["data"]["workers"],
        pin_memory=device.type == "cuda",
    )
    show = place.is_main and (sys.stderr.isatty() if progress is None else progress)
    from tqdm.auto import tqdm

    bar = tqdm(total=stop, initial=start, disable=not show, unit="step", dynamic_ncols=True)

    def report(line: str) -> None:
        if show:
            bar.write(line)
        elif place.is_main:
            print(line, flush=True)

    metrics: dict[str, float] = {}
    stop_requests: list[str] = []
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    interval_start, interval_steps, began = time.perf_counter(), 0, time.perf_counter()
    network.train()
    step = start
    with stop_signals(stop_requests):
        for items in loader:
            batch = task.make_batch(items, offset=step * place.world_size + place.rank)
            with autocast(config["amp"], device):
                loss = task.loss(module, batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config["grad_clip"] > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(parameters, config["grad_clip"])
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if ema is not None:
                ema.update(network)
            step += 1
            loss_sum += loss.detach().double()
            interval_steps += 1
            bar.update(1)
            if step % config["log_every"] == 0 or step == stop:
                if place.world_size > 1:
                    dist.all_reduce(loss_sum)
                    loss_sum /= place.world_size
                elapsed = time.perf_counter() - interval_start
                record = {
                    "step": step,
                    "loss": loss_sum.item() / interval_steps,
                    "lr": optimizer.param_groups[0]["lr"],
                    "patches_per_s": interval_steps * batch_size * place.world_size / max(elapsed, 1e-9),
                    "time_s": time.perf_counter() - began,
                }
                log.write(record)
                board.scalars("train", {key: record[key] for key in ("loss", "lr", "patches_per_s")}, step)
                bar.set_postfix(loss=f"{record['loss']:.4g}", patches_s=f"{record['patches_per_s']:.1f}")
                if not show:
                    report(
                        f"step {step}/{config['steps']}  loss {record['loss']:.5f}  lr {record['lr']:.3g}  "
                        f"{record['patches_per_s']:.1f} patches/s"
                    )
                loss_sum.zero_()
                interval_start, interval_steps = time.perf_counter(), 0
            if place.is_main and ((config["val_every"] and step % config["val_every"] == 0) or step == config["steps"]):
                metrics, images = _validate(task, ema, preview=board.writer is not None)
                if metrics:
                    log.write({"step": step, **{f"val_{name}": value for name, value in metrics.items()}})
                    board.scalars("val", metrics, step)
                    if board.writer is not None:
                        board.images("val/preview", images, step)
                    report(f"step {step}: validation {format_metrics(metrics)}")
            stopped_by = stop_requested(stop_requests, place, device)
            due = (config["save_every"] and step % config["save_every"] == 0) or step == stop
            if place.is_main and (due or stopped_by):
                _save(task, ema, optimizer, scheduler, scaler, step, config, device, run_dir)
            if stopped_by:
                report(f"{stopped_by} at step {step}: checkpoint written; --resume (or --auto-resume) continues")
                break
    bar.close()
    board.close()
    if place.world_size > 1:
        dist.barrier()  # the checkpoint is complete when any rank returns
    return TrainResult(run_dir, step, run_dir / CHECKPOINT_NAME, network, metrics, stopped_by)


def _save(
    task: Task,
    ema: WeightAverage | None,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
    step: int,
    config: dict[str, Any],
    device: torch.device,
    run_dir: Path,
) -> None:
    """Writes ``last.pt`` (and the task's extra weight files: of the EMA weights when there is an average)
    atomically."""
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    with averaged_weights(ema, task.network):
        for name, state_dict in task.extra_files().items():
            save_torch(state_dict, run_dir / name)
    averaged = {} if ema is None else {"ema_state_dict": ema.state_dict()}
    save_torch(
        {
            **averaged,
            "model": task.model_name,
            "model_kwargs": task.model_kwargs,
            "state_dict": task.network.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "step": step,
            "config": config,
            "rng": rng,
        },
        run_dir / CHECKPOINT_NAME,
    )
