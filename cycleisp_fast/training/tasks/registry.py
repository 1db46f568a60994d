"""The registry of training recipes: the name of each (``task = "..."`` in a config) -> its :class:`Task` class
(:data:`TASK_CLASSES`), and :func:`make_task`, which builds the task of a resolved config."""

from __future__ import annotations

from typing import Any

import torch

from cycleisp_fast.training.tasks.base import Task
from cycleisp_fast.training.tasks.denoise import AindnetSyntheticTask, DenoiseRawTask, DenoiseSrgbTask
from cycleisp_fast.training.tasks.isp import CycleIspJointTask, Raw2RgbTask, Rgb2RawTask
from cycleisp_fast.training.tasks.transfer import AindnetTransferTask

TASK_CLASSES: dict[str, type[Task]] = {
    "denoise-srgb": DenoiseSrgbTask,
    "denoise-raw": DenoiseRawTask,
    "aindnet-synthetic": AindnetSyntheticTask,
    "aindnet-transfer": AindnetTransferTask,
    "rgb2raw": Rgb2RawTask,
    "raw2rgb": Raw2RgbTask,
    "cycleisp-joint": CycleIspJointTask,
}


def make_task(config: dict[str, Any], device: torch.device) -> Task:
    """The task of a resolved config, its data read and checked, its network built (on the CPU, from the global
    RNG: seed it first) and its ``init`` weights loaded."""
    task = TASK_CLASSES[config["task"]](config, device)
    if config["init"]:
        task.load_init(config["init"])
    return task
