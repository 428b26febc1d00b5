"""The activations of the OFA networks, by name, as modules and as plain functions.

The dynamic blocks call the functional form in their forward (no module lookup per call); the
static subnets use the module form so they script and export with plain PyTorch. ``h_swish``
and ``h_sigmoid`` are PyTorch's hardswish/hardsigmoid, the same formulas OFA uses
(``x * relu6(x + 3) / 6`` and ``relu6(x + 3) / 6``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ACTIVATIONS", "make_activation", "activation_fn"]

ACTIVATIONS = ("relu", "relu6", "h_swish", "h_sigmoid")


def _relu(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x, inplace=True)


def _relu6(x: torch.Tensor) -> torch.Tensor:
    return F.hardtanh(x, 0.0, 6.0, inplace=True)


_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": _relu,
    "relu6": _relu6,
    "h_swish": F.hardswish,
    "h_sigmoid": F.hardsigmoid,
}


def _check(name: str) -> None:
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")


def make_activation(name: str) -> nn.Module:
    """A fresh module for ``name`` (static twin of :func:`activation_fn`)."""
    _check(name)
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "h_swish":
        return nn.Hardswish()
    return nn.Hardsigmoid()


def activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The functional form used in dynamic forwards (relu and relu6 work in place)."""
    _check(name)
    return _FUNCTIONS[name]
