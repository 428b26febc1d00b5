"""Elastic fully connected layer (first input and output features) and its static twin."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DynamicLinear", "linear"]


def linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    """The static twin: a plain ``nn.Linear``."""
    return nn.Linear(in_features, out_features, bias=bias)


class DynamicLinear(nn.Module):
    """Linear layer using ``weight[:out, :in]`` with ``in`` taken from the input."""

    def __init__(self, max_in: int, max_out: int, bias: bool = True) -> None:
        super().__init__()
        self.max_in, self.max_out = max_in, max_out
        self.weight = nn.Parameter(torch.empty(max_out, max_in))
        self.bias = nn.Parameter(torch.empty(max_out)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """OFA's init: uniform in +-1/sqrt(fan_in), zero bias."""
        bound = 1.0 / math.sqrt(self.max_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor, out_features: int | None = None) -> torch.Tensor:
        o, i = out_features or self.max_out, x.shape[-1]
        b = None if self.bias is None else self.bias[:o]
        return F.linear(x, self.weight[:o, :i], b)

    @torch.no_grad()
    def extract(self, in_features: int, out_features: int) -> nn.Linear:
        lin = linear(in_features, out_features, bias=self.bias is not None)
        lin.weight.copy_(self.weight[:out_features, :in_features])
        if self.bias is not None:
            lin.bias.copy_(self.bias[:out_features])
        return lin
