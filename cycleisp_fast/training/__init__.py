"""Training: the recipes of CycleISP and AINDNet, from a TOML config to a run folder, single process or ``torchrun``
+ DDP, resumable bit for bit.

- :mod:`~cycleisp_fast.training.schema` and :mod:`~cycleisp_fast.training.config`: the config keys and the
  reading, overriding and checking of config files (:func:`load_config`);
- :mod:`~cycleisp_fast.training.tasks`: one recipe per ``task`` (network, patches, loss, validation), built by
  :func:`make_task`;
- :mod:`~cycleisp_fast.training.loop`: :func:`train`, the loop, checkpoints written and resumed;
- :mod:`~cycleisp_fast.training.distributed`, :mod:`~cycleisp_fast.training.logs`,
  :mod:`~cycleisp_fast.training.checkpoints`: the process's place and device, ``log.jsonl``, ``last.pt``.

Training sits above :mod:`cycleisp_fast.pipelines` (synthesis, metrics, the camera pipelines it trains with), and
the ``train`` command above it.
"""

from __future__ import annotations

from cycleisp_fast.training.checkpoints import CHECKPOINT_NAME, RunFolderError, load_checkpoint
from cycleisp_fast.training.config import (
    ConfigError,
    config_differences,
    config_to_toml,
    load_config,
    packaged_configs,
    parse_override,
    resolve_config,
)
from cycleisp_fast.training.distributed import (
    Distributed,
    StepBatches,
    distributed_from_environment,
    process_group,
    select_device,
)
from cycleisp_fast.training.logs import LOG_NAME, JsonLog, format_metrics, read_log
from cycleisp_fast.training.loop import CONFIG_NAME, TrainResult, train
from cycleisp_fast.training.optim import WeightAverage, lr_factor, make_optimizer
from cycleisp_fast.training.schema import SCHEMA, TASKS
from cycleisp_fast.training.tasks import TASK_CLASSES, Task, make_task

__all__ = [
    "CHECKPOINT_NAME",
    "RunFolderError",
    "load_checkpoint",
    "ConfigError",
    "config_differences",
    "config_to_toml",
    "load_config",
    "packaged_configs",
    "parse_override",
    "resolve_config",
    "Distributed",
    "StepBatches",
    "distributed_from_environment",
    "process_group",
    "select_device",
    "LOG_NAME",
    "JsonLog",
    "format_metrics",
    "read_log",
    "CONFIG_NAME",
    "TrainResult",
    "lr_factor",
    "make_optimizer",
    "WeightAverage",
    "train",
    "SCHEMA",
    "TASKS",
    "TASK_CLASSES",
    "Task",
    "make_task",
]
