"""Squeeze-and-excite with elastic width, and its static twin.

The active block of ``mid`` channels squeezes to ``se_channels(mid)`` (a quarter, rounded to 8):
reduce 1x1 with bias, relu, expand 1x1 with bias, h-sigmoid, then scale the input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.blueprint import se_channels
from search_spaces.ops.pointwise import pointwise_conv2d

__all__ = ["DynamicSE", "SqueezeExcite"]


class SqueezeExcite(nn.Module):
    """The static twin, with plain 1x1 convolutions ``reduce`` and ``expand``."""

    def __init__(self, channels: int, hidden: int,
                 device: torch.device | str | None = None, init: bool = True) -> None:
        super().__init__()
        self.reduce = pointwise_conv2d(channels, hidden, True, device, init)
        self.expand = pointwise_conv2d(hidden, channels, True, device, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(self.reduce(y), inplace=True)
        return x * F.hardsigmoid(self.expand(y))


class DynamicSE(nn.Module):
    """SE over the first ``mid`` channels with the first ``se_channels(mid)`` hidden units."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        self.max_channels = max_channels
        self.max_hidden = se_channels(max_channels)
        self.reduce = nn.Conv2d(max_channels, self.max_hidden, 1, bias=True)
        self.expand = nn.Conv2d(self.max_hidden, max_channels, 1, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """OFA's ``he_fout`` init with zero biases."""
        for conv in (self.reduce, self.expand):
            nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / conv.out_channels))
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, hidden: int | None = None) -> torch.Tensor:
        c = x.shape[1]
        h = se_channels(c) if hidden is None else hidden
        y = x.mean((2, 3), keepdim=True)
        y = F.conv2d(y, self.reduce.weight[:h, :c], self.reduce.bias[:h])
        y = F.relu(y, inplace=True)
        y = F.conv2d(y, self.expand.weight[:c, :h], self.expand.bias[:c])
        return x * F.hardsigmoid(y)

    @torch.no_grad()
    def extract(self, channels: int) -> SqueezeExcite:
        h = se_channels(channels)
        se = SqueezeExcite(channels, h, self.reduce.weight.device, init=False)
        self.copy_into(se, channels)
        return se

    @torch.no_grad()
    def copy_into(self, se: SqueezeExcite, channels: int) -> None:
        """Copy the active weights for ``channels`` middle channels into a static ``se``."""
        h = se_channels(channels)
        se.reduce.weight.copy_(self.reduce.weight[:h, :channels])
        se.reduce.bias.copy_(self.reduce.bias[:h])
        se.expand.weight.copy_(self.expand.weight[:channels, :h])
        se.expand.bias.copy_(self.expand.bias[:channels])

    @torch.no_grad()
    def permute_channels(self, order: torch.Tensor) -> None:
        """Reorder the block's middle channels (the SE's input and output channels)."""
        self.reduce.weight.copy_(self.reduce.weight[:, order])
        self.expand.weight.copy_(self.expand.weight[order])
        self.expand.bias.copy_(self.expand.bias[order])

    @torch.no_grad()
    def sort_hidden(self) -> None:
        """Order the hidden units by L1 importance of their expand weights (nested widths)."""
        order = self.expand.weight.abs().sum(dim=(0, 2, 3)).argsort(descending=True)
        self.expand.weight.copy_(self.expand.weight[:, order])
        self.reduce.weight.copy_(self.reduce.weight[order])
        self.reduce.bias.copy_(self.reduce.bias[order])
