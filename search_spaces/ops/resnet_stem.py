"""The elastic ResNet-D stem (three 3x3 convs, the middle one residual and skippable) and its
static twin.

conv0 3x3 (stride 2; 1 for small inputs) 3 -> mid, BN, ReLU; conv1 3x3 mid -> mid, BN, ReLU,
added to its input (OFA's ``ResidualBlock`` with an identity shortcut; ``d[0] = 0`` leaves it
out); conv2 3x3 mid -> out, BN, ReLU. ``mid`` and ``out`` are elastic (the arch's ``w[0]`` and
``w[1]``); the max pooling after the stem belongs to the network, not to this block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.ops.batchnorm import DynamicBatchNorm2d, copy_batchnorm
from search_spaces.ops.conv import DynamicConv2d, conv2d

__all__ = ["ResNetStem", "DynamicResNetStem"]


class ResNetStem(nn.Module):
    """Static stem; ``residual=False`` means the middle conv was skipped."""

    def __init__(self, mid_ch: int, out_ch: int, stride: int, residual: bool,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 device: torch.device | str | None = None, init: bool = True) -> None:
        super().__init__()
        self.conv0 = conv2d(3, mid_ch, 3, stride, device, init)
        self.bn0 = nn.BatchNorm2d(mid_ch, bn_eps, bn_momentum, device=device)
        self.residual = residual
        if residual:
            self.conv1: nn.Module = conv2d(mid_ch, mid_ch, 3, 1, device, init)
            self.bn1: nn.Module = nn.BatchNorm2d(mid_ch, bn_eps, bn_momentum, device=device)
        self.conv2 = conv2d(mid_ch, out_ch, 3, 1, device, init)
        self.bn2 = nn.BatchNorm2d(out_ch, bn_eps, bn_momentum, device=device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn0(self.conv0(x)), inplace=True)
        if self.residual:
            x = F.relu(self.bn1(self.conv1(x))) + x
        return F.relu(self.bn2(self.conv2(x)), inplace=True)


class DynamicResNetStem(nn.Module):
    """Stem with elastic middle and output widths and a skippable residual conv."""

    def __init__(self, mid_choices: tuple[int, ...], out_choices: tuple[int, ...], stride: int,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.mid_choices, self.out_choices = tuple(mid_choices), tuple(out_choices)
        self.stride = stride
        max_mid, max_out = max(self.mid_choices), max(self.out_choices)
        self.conv0 = DynamicConv2d(3, max_mid, 3, stride)
        self.bn0 = DynamicBatchNorm2d(max_mid, bn_eps, bn_momentum)
        self.conv1 = DynamicConv2d(max_mid, max_mid, 3)
        self.bn1 = DynamicBatchNorm2d(max_mid, bn_eps, bn_momentum)
        self.conv2 = DynamicConv2d(max_mid, max_out, 3)
        self.bn2 = DynamicBatchNorm2d(max_out, bn_eps, bn_momentum)
        self.set_active(max_mid, max_out, residual=True)

    def set_active(self, mid_ch: int, out_ch: int, residual: bool) -> None:
        if mid_ch not in self.mid_choices or out_ch not in self.out_choices:
            raise ValueError(f"stem widths {mid_ch}/{out_ch} not in {self.mid_choices}/"
                             f"{self.out_choices}")
        self.active_mid, self.active_out, self.residual = mid_ch, out_ch, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = self.active_mid
        x = F.relu(self.bn0(self.conv0(x, mid)), inplace=True)
        if self.residual:
            x = F.relu(self.bn1(self.conv1(x, mid))) + x
        return F.relu(self.bn2(self.conv2(x, self.active_out)), inplace=True)

    @torch.no_grad()
    def extract(self) -> ResNetStem:
        mid, out = self.active_mid, self.active_out
        stem = ResNetStem(mid, out, self.stride, self.residual, self.bn0.eps, self.bn0.momentum,
                          self.conv0.weight.device, init=False)
        pairs = [(stem.conv0, stem.bn0, self.conv0, self.bn0, 3, mid),
                 (stem.conv2, stem.bn2, self.conv2, self.bn2, mid, out)]
        if self.residual:
            pairs.append((stem.conv1, stem.bn1, self.conv1, self.bn1, mid, mid))
        for conv, bn, src_conv, src_bn, i, o in pairs:
            conv.weight.copy_(src_conv.active_weight(i, o))
            copy_batchnorm(src_bn, bn, o)
        return stem
