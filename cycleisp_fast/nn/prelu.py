"""``OutputSavingPReLU``: an ``nn.PReLU`` whose backward keeps its output instead of its input, and
:func:`use_output_saving_prelu`, which swaps it into a model for training.

In the CycleISP networks every PReLU sits between two convolutions (``conv -> PReLU -> conv``): the PReLU's
input is the first convolution's output and its output the second convolution's input, which that convolution
keeps for its backward anyway. ``nn.PReLU`` keeps its input, so both tensors stay alive until the backward;
keeping the output instead needs one of them. Where every slope is positive, the output says all the backward
needs: ``x > 0`` exactly where ``y > 0``, and ``x = y / a`` elsewhere. With a slope <= 0 (or not finite) the
module keeps its input as ``nn.PReLU`` does. Same parameter, same state-dict keys, same results within float
rounding (``x`` rebuilt as ``y / a`` is within an ulp of ``x``). Under ``torch.compile``, under autocast and for
an input of another dtype than the weight it is ``F.prelu``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _slopes_view(weight: Tensor, x: Tensor) -> Tensor:
    """The PReLU slopes ``(1,)`` or ``(C,)`` laid out to broadcast over ``x`` ``(N, C, ...)``."""
    if weight.numel() == 1:
        return weight.reshape(())
    return weight.reshape((1, -1) + (1,) * (x.dim() - 2))


class _PReLUFromOutput(torch.autograd.Function):
    """``y = prelu(x, a)`` for slopes ``a > 0``, keeping ``y`` (not ``x``) for the backward."""

    @staticmethod
    def forward(ctx, x, weight):
        y = F.prelu(x, weight)
        ctx.save_for_backward(y, weight)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, weight = ctx.saved_tensors
        # x is y where y > 0 and y / a elsewhere (a > 0): the gradients of prelu at that x, by torch's kernel.
        x = torch.where(y > 0, y, y / _slopes_view(weight, y))
        grad_x, grad_weight = torch.ops.aten._prelu_kernel_backward(grad, x, _slopes_view(weight, y))
        if ctx.needs_input_grad[1]:
            dims = [d for d in range(grad_weight.dim()) if weight.numel() == 1 or d != 1]
            grad_weight = grad_weight.sum(dims).reshape(weight.shape)
        else:
            grad_weight = None
        return grad_x, grad_weight


class OutputSavingPReLU(nn.PReLU):
    """An ``nn.PReLU`` that keeps its output, not its input, for the backward where its slopes are all positive
    (see the module docstring). Build it from an ``nn.PReLU`` with :meth:`from_prelu` (shares its weight).

    Shape:
        - input: ``(N, C, ...)`` (``C`` = ``num_parameters`` when that is not 1); output: the same

    Example:
        >>> act = nn.PReLU(8)
        >>> lean = OutputSavingPReLU.from_prelu(act)
        >>> x = torch.randn(2, 8, 5, 5, requires_grad=True)
        >>> torch.allclose(lean(x), act(x)), list(lean.state_dict()) == list(act.state_dict())
        (True, True)
    """

    @classmethod
    def from_prelu(cls, prelu: nn.PReLU) -> "OutputSavingPReLU":
        """An ``OutputSavingPReLU`` sharing ``prelu``'s weight."""
        if type(prelu) is not nn.PReLU:
            raise TypeError(f"from_prelu takes an nn.PReLU, got {type(prelu).__name__}")
        lean = cls(prelu.num_parameters, device="meta")
        lean.weight = prelu.weight
        lean.train(prelu.training)
        return lean

    def forward(self, x: Tensor) -> Tensor:
        """``F.prelu(x, weight)``, keeping the output for the backward where that is exact (see the class)."""
        weight = self.weight
        wants_gradients = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
        mixed = x.dtype != weight.dtype or torch.is_autocast_enabled(x.device.type)
        if not wants_gradients or mixed or torch.compiler.is_compiling() or x.dim() < 2:
            return F.prelu(x, weight)
        if not bool(torch.all(torch.isfinite(weight) & (weight > 0))):
            return F.prelu(x, weight)
        return _PReLUFromOutput.apply(x, weight)


def use_output_saving_prelu(model: nn.Module) -> int:
    """Replaces, in place, every ``nn.PReLU`` of ``model`` by an :class:`OutputSavingPReLU` sharing its weight
    (one replacement per module object, so a PReLU shared under many names stays shared); returns how many
    module objects were replaced. State-dict keys unchanged.

    Shape:
        - the model's inputs and outputs are unchanged

    Example:
        >>> act = nn.PReLU(4)
        >>> model = nn.Sequential(nn.Conv2d(4, 4, 3), act, nn.Conv2d(4, 4, 3), act)
        >>> use_output_saving_prelu(model), model[1] is model[3], type(model[1]).__name__
        (1, True, 'OutputSavingPReLU')
    """
    replacements: dict[int, OutputSavingPReLU] = {}
    for module in list(model.modules()):
        for name, child in list(module._modules.items()):  # not named_children(): it skips repeated children
            if type(child) is nn.PReLU:
                if id(child) not in replacements:
                    replacements[id(child)] = OutputSavingPReLU.from_prelu(child)
                setattr(module, name, replacements[id(child)])
    return len(replacements)
