"""The optimiser, the learning-rate schedule and the weight average (EMA) of the training loop.

- ``optimizer = "adam" | "adamw"`` with ``weight_decay`` (Adam: an L2 term in the gradient; AdamW: decoupled, as
  Restormer and NAFNet train);
- the learning rate (:func:`lr_factor`): ``warmup_steps`` of linear warm-up, then the cosine from ``lr`` down to
  ``min_lr`` over the remaining steps, or restarted every ``restart_every`` steps (Restormer's cyclic cosine with
  equal periods), or constant — a closed-form function of the step, so a resumed run follows the same schedule;
- ``ema_decay`` > 0 keeps an exponential moving average of the weights (:class:`WeightAverage`,
  ``ema = decay * ema + (1 - decay) * weights`` after every step, BasicSR's ``net_g_ema``): validation runs on it,
  checkpoints hold it beside the raw weights (``ema_state_dict``) and ``denoise``/``eval`` load it.

Example:
    >>> config = {"lr": 1e-3, "min_lr": 0.0, "steps": 10, "warmup_steps": 2, "lr_schedule": "cosine"}
    >>> [round(lr_factor(step, config), 3) for step in range(0, 11, 2)]
    [0.5, 1.0, 0.854, 0.5, 0.146, 0.0]
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, ContextManager, Iterable, Iterator

import torch
from torch import Tensor, nn

OPTIMIZERS = ("adam", "adamw")


def make_optimizer(parameters: Iterable[nn.Parameter], config: dict[str, Any]) -> torch.optim.Optimizer:
    """``torch.optim.Adam`` or ``AdamW`` (``config["optimizer"]``) at ``config["lr"]`` with its ``weight_decay``."""
    optimizer = torch.optim.AdamW if config["optimizer"] == "adamw" else torch.optim.Adam
    return optimizer(parameters, lr=config["lr"], weight_decay=config["weight_decay"])


def lr_factor(step: int, config: dict[str, Any]) -> float:
    """The learning rate of ``step`` (0-based) over ``config["lr"]``: ``(step + 1) / warmup_steps`` during the
    warm-up, then 1 (constant) or the cosine from 1 down to ``min_lr / lr`` at ``steps`` (with ``restart_every``:
    down to it at the end of each period of that many steps, then back to 1)."""
    warmup = config.get("warmup_steps", 0)
    if step < warmup:
        return (step + 1) / warmup
    if config["lr_schedule"] == "constant":
        return 1.0
    floor = config["min_lr"] / config["lr"]
    elapsed, span = min(step, config["steps"]) - warmup, config["steps"] - warmup
    period = config.get("restart_every", 0)
    if period:
        elapsed, span = elapsed % period, period
    progress = elapsed / span
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


class WeightAverage:
    """An exponential moving average of a network's state dict (parameters and floating buffers; integer
    buffers are copied), updated in place after each optimiser step.

    Args:
        network: the network whose weights are averaged (its current weights start the average).
        decay: in (0, 1); BasicSR's default 0.999.
    """

    def __init__(self, network: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay!r}")
        self.decay = decay
        self.average = {name: value.detach().clone() for name, value in network.state_dict().items()}

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        """``average = decay * average + (1 - decay) * weights`` (integer buffers: the weights' values)."""
        for name, value in network.state_dict().items():
            target = self.average[name]
            if target.is_floating_point():
                target.lerp_(value.detach(), 1 - self.decay)
            else:
                target.copy_(value)

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged weights, under the network's (official) state-dict keys."""
        return {name: value.clone() for name, value in self.average.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restores an average saved by :meth:`state_dict`; its keys and shapes must be the network's."""
        if set(state) != set(self.average) or any(state[k].shape != v.shape for k, v in self.average.items()):
            raise ValueError("the saved EMA weights do not fit the network (other keys or shapes)")
        for name, value in state.items():
            self.average[name].copy_(value)

    @contextlib.contextmanager
    def applied(self, network: nn.Module) -> Iterator[None]:
        """Runs the block with the averaged weights loaded into ``network``, then puts its own weights back."""
        own = {name: value.detach().clone() for name, value in network.state_dict().items()}
        network.load_state_dict(self.average)
        try:
            yield
        finally:
            network.load_state_dict(own)


def averaged_weights(average: WeightAverage | None, network: nn.Module) -> ContextManager[None]:
    """``average.applied(network)``, or a block that changes nothing when there is no average (``ema_decay = 0``)."""
    return average.applied(network) if average is not None else contextlib.nullcontext()
