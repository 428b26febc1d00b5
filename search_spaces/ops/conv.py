"""Elastic dense KxK convolution (first input and output channels) and its static twin.

ResNet50D's convolutions are dense (not depthwise) and elastic in both widths: a bottleneck's
3x3 conv shrinks with the expand ratio on both sides, its 1x1 convs with the ratio and the
stage width, the stem convs with the stem widths. The active weight is always the leading
``[:out, :in]`` corner of the stored one, as in OFA's ``DynamicConv2d``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.ops.pointwise import conv2d_uninitialised

__all__ = ["DynamicConv2d", "conv2d"]


def conv2d(in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1,
           device: torch.device | str | None = None, init: bool = True) -> nn.Conv2d:
    """The static twin: a plain 'same'-padded convolution without bias (``init=False``: the
    weights are left empty for extraction to fill)."""
    make = nn.Conv2d if init else conv2d_uninitialised
    return make(in_ch, out_ch, kernel, stride, kernel // 2, bias=False, device=device)


class DynamicConv2d(nn.Module):
    """KxK convolution whose active part is ``weight[:out, :in]`` (``in`` from the input)."""

    def __init__(self, max_in: int, max_out: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.max_in, self.max_out, self.kernel, self.stride = max_in, max_out, kernel, stride
        self.weight = nn.Parameter(torch.empty(max_out, max_in, kernel, kernel))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """OFA's ``he_fout`` init over the stored (largest) layer."""
        n = self.kernel * self.kernel * self.max_out
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / n))

    def active_weight(self, in_ch: int, out_ch: int) -> torch.Tensor:
        w = self.weight
        if out_ch != self.max_out:
            w = w[:out_ch]
        if in_ch != self.max_in:
            w = w[:, :in_ch]
        return w

    def forward(self, x: torch.Tensor, out_ch: int) -> torch.Tensor:
        return F.conv2d(x, self.active_weight(x.shape[1], out_ch), None, self.stride,
                        self.kernel // 2)

    @torch.no_grad()
    def extract(self, in_ch: int, out_ch: int) -> nn.Conv2d:
        conv = conv2d(in_ch, out_ch, self.kernel, self.stride, self.weight.device, init=False)
        conv.weight.copy_(self.active_weight(in_ch, out_ch))
        return conv

    def extra_repr(self) -> str:
        return f"{self.max_in}, {self.max_out}, kernel={self.kernel}, stride={self.stride}"
