"""Static convolution + optional BN + activation (stem and head layers), and global pooling.

These layers are not elastic in any space, so the supernet holds them as-is and extraction
copies them.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from search_spaces.ops.activations import make_activation

__all__ = ["ConvBNAct", "GlobalAvgPool"]


class ConvBNAct(nn.Module):
    """``conv`` (no bias) -> ``bn`` (or identity) -> ``act`` (or identity)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1,
                 act: str | None = None, bn: bool = True, bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False)
        self.bn: nn.Module = (nn.BatchNorm2d(out_ch, eps=bn_eps, momentum=bn_momentum)
                              if bn else nn.Identity())
        self.act: nn.Module = make_activation(act) if act else nn.Identity()
        nn.init.normal_(self.conv.weight, 0.0, math.sqrt(2.0 / (kernel * kernel * out_ch)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class GlobalAvgPool(nn.Module):
    """Mean over the spatial dimensions, keeping them (``N, C, 1, 1``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)
