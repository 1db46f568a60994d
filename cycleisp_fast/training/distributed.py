"""Where this process trains: its rank among the ``torchrun`` processes (:class:`Distributed`), its device
(:func:`select_device`), the process group (:func:`process_group`) and its share of every step's patches
(:class:`StepBatches`), and the signals that stop a run cleanly (:func:`stop_signals`, agreed by every rank with
:func:`stop_requested`).

When ``WORLD_SIZE`` > 1 (``torchrun``), the process group is initialised (NCCL on CUDA, Gloo on the CPU), each
process takes GPU ``LOCAL_RANK``, gradients are averaged by DDP, and only rank 0 validates and writes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """This process's place: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process is rank 0, the one that validates and writes."""
        return self.rank == 0


def distributed_from_environment() -> Distributed:
    """The ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` that ``torchrun`` sets (a single process without them)."""

    def read(name: str, default: int) -> int:
        text = os.environ.get(name, str(default))
        try:
            return int(text)
        except ValueError:
            raise RuntimeError(f"environment variable {name} must be an integer, got {text!r}") from None

    return Distributed(read("RANK", 0), read("WORLD_SIZE", 1), read("LOCAL_RANK", 0))


def select_device(name: str | torch.device | None, place: Distributed) -> torch.device:
    """``None``/``"auto"``: the GPU of this process (``cuda:LOCAL_RANK``) when CUDA is available, else the CPU;
    ``"cuda"`` without an index also means ``cuda:LOCAL_RANK``."""
    if name is None or name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:<index>, got {name!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: CUDA is not available here")
        if device.index is None:
            device = torch.device("cuda", place.local_rank)
    elif device.type != "cpu":
        raise ValueError(f"device must be auto, cpu, cuda or cuda:<index>, got {name!r}")
    return device


@contextlib.contextmanager
def process_group(device: torch.device, place: Distributed) -> Iterator[None]:
    """Initialises (and finally destroys) the default process group when there are several processes and none
    exists yet: NCCL for CUDA devices, Gloo for the CPU."""
    if place.world_size == 1 or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


class StepBatches(torch.utils.data.Sampler):
    """The dataset indices of this process's batches for steps ``start`` to ``stop - 1``: step ``s`` of rank ``r``
    takes items ``(s * world + r) * b`` to ``(s * world + r + 1) * b - 1``, so no two batches share an item."""

    def __init__(self, start: int, stop: int, batch_size: int, place: Distributed):
        self.start, self.stop, self.batch_size, self.place = start, stop, batch_size, place

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            first = (step * self.place.world_size + self.place.rank) * self.batch_size
            yield list(range(first, first + self.batch_size))


STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
"""Signals that make the trainer write its checkpoint after the current step and return (Slurm sends SIGTERM, or
SIGUSR1 with ``--signal``, before it ends or requeues a job)."""


@contextlib.contextmanager
def stop_signals(requests: list[str]):
    """Records the :data:`STOP_SIGNALS` that arrive (by name) in ``requests`` instead of ending the process; the
    loop checkpoints and returns after its current step. Only the main thread can take signals: elsewhere this
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    for number in STOP_SIGNALS:
        signal.signal(number, lambda number, frame: requests.append(signal.Signals(number).name))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stop_requested(requests: list[str], place: Distributed, device: torch.device) -> str | None:
    """The signal that asks this run to stop, agreed by every rank (one of them is enough)."""
    if place.world_size == 1:
        return requests[0] if requests else None
    flag = torch.tensor([1 if requests else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return (requests[0] if requests else "a signal on another rank") if flag.item() else None
