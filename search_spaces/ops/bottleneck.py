"""The elastic ResNet bottleneck block (ResNet-D downsample) and its static twin.

1x1 conv + BN + ReLU -> 3x3 conv (strided) + BN + ReLU -> 1x1 conv + BN, plus the shortcut,
then ReLU. Where the block changes shape (a stage's first block) the shortcut is ResNet-D's: a
``stride``x``stride`` average pooling (ceil mode; nothing at stride 1) then a 1x1 conv + BN;
elsewhere it is the identity. Elastic: the output width (the stage's width choice) and the
middle width ``bottleneck_mid_channels(out, ratio)``; the input width follows the input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.ops.batchnorm import DynamicBatchNorm2d, copy_batchnorm
from search_spaces.ops.conv import DynamicConv2d, conv2d
from search_spaces.resnet_plan import bottleneck_mid_channels

__all__ = ["Bottleneck", "DynamicBottleneck"]


def _avg_pool(stride: int) -> nn.Module:
    """ResNet-D's shortcut pooling; at stride 1 OFA's 1x1 pool is the identity."""
    if stride == 1:
        return nn.Identity()
    return nn.AvgPool2d(stride, stride, 0, ceil_mode=True)


class Bottleneck(nn.Module):
    """Static bottleneck; ``downsample`` selects the pooled 1x1-conv shortcut over identity.

    ``init=False`` leaves the convolution weights empty (extraction copies them in)."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, stride: int, downsample: bool,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 device: torch.device | str | None = None, init: bool = True) -> None:
        super().__init__()
        self.conv1 = conv2d(in_ch, mid_ch, 1, 1, device, init)
        self.bn1 = nn.BatchNorm2d(mid_ch, bn_eps, bn_momentum, device=device)
        self.conv2 = conv2d(mid_ch, mid_ch, 3, stride, device, init)
        self.bn2 = nn.BatchNorm2d(mid_ch, bn_eps, bn_momentum, device=device)
        self.conv3 = conv2d(mid_ch, out_ch, 1, 1, device, init)
        self.bn3 = nn.BatchNorm2d(out_ch, bn_eps, bn_momentum, device=device)
        if downsample:
            self.down_pool: nn.Module = _avg_pool(stride)
            self.down_conv: nn.Module = conv2d(in_ch, out_ch, 1, 1, device, init)
            self.down_bn: nn.Module = nn.BatchNorm2d(out_ch, bn_eps, bn_momentum, device=device)
        else:
            self.down_pool = self.down_conv = self.down_bn = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.down_bn(self.down_conv(self.down_pool(x)))
        h = F.relu(self.bn1(self.conv1(x)), inplace=True)
        h = F.relu(self.bn2(self.conv2(h)), inplace=True)
        h = self.bn3(self.conv3(h))
        return F.relu(h + shortcut, inplace=True)


class DynamicBottleneck(nn.Module):
    """Bottleneck with elastic output width and expand ratio (set by :meth:`set_active`).

    ``out_choices`` are the stage's widths (one per width index); the stored layers have the
    largest width and the largest ratio's middle width.
    """

    def __init__(self, max_in: int, out_choices: tuple[int, ...], ratios: tuple[float, ...],
                 stride: int, downsample: bool, bn_eps: float = 1e-5,
                 bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.max_in, self.stride, self.downsample = max_in, stride, downsample
        self.out_choices = tuple(out_choices)
        self.ratios = tuple(sorted(set(ratios)))
        self.max_out = max(self.out_choices)
        self.max_mid = bottleneck_mid_channels(self.max_out, self.ratios[-1])
        self.conv1 = DynamicConv2d(max_in, self.max_mid)
        self.bn1 = DynamicBatchNorm2d(self.max_mid, bn_eps, bn_momentum)
        self.conv2 = DynamicConv2d(self.max_mid, self.max_mid, 3, stride)
        self.bn2 = DynamicBatchNorm2d(self.max_mid, bn_eps, bn_momentum)
        self.conv3 = DynamicConv2d(self.max_mid, self.max_out)
        self.bn3 = DynamicBatchNorm2d(self.max_out, bn_eps, bn_momentum)
        if downsample:
            self.down_pool: nn.Module = _avg_pool(stride)
            self.down_conv: DynamicConv2d | None = DynamicConv2d(max_in, self.max_out)
            self.down_bn: DynamicBatchNorm2d | None = DynamicBatchNorm2d(self.max_out, bn_eps,
                                                                         bn_momentum)
        else:
            self.down_pool, self.down_conv, self.down_bn = nn.Identity(), None, None
        self.set_active(self.max_out, self.ratios[-1])

    def set_active(self, out_ch: int, ratio: float) -> None:
        if out_ch not in self.out_choices or ratio not in self.ratios:
            raise ValueError(f"width {out_ch}/ratio {ratio} not in {self.out_choices}/"
                             f"{self.ratios}")
        self.active_out, self.active_ratio = out_ch, ratio
        self.active_mid = bottleneck_mid_channels(out_ch, ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid, out = self.active_mid, self.active_out
        if self.down_conv is not None and self.down_bn is not None:
            shortcut = self.down_bn(self.down_conv(self.down_pool(x), out))
        else:
            shortcut = x
        h = F.relu(self.bn1(self.conv1(x, mid)), inplace=True)
        h = F.relu(self.bn2(self.conv2(h, mid)), inplace=True)
        h = self.bn3(self.conv3(h, out))
        return F.relu(h + shortcut, inplace=True)

    @torch.no_grad()
    def extract(self, in_ch: int) -> Bottleneck:
        """A static :class:`Bottleneck` for input width ``in_ch`` with copies of the active
        weights and statistics."""
        mid, out = self.active_mid, self.active_out
        block = Bottleneck(in_ch, mid, out, self.stride, self.downsample, self.bn3.eps,
                           self.bn3.momentum, self.conv1.weight.device, init=False)
        for conv, bn, src_conv, src_bn, i, o in (
                (block.conv1, block.bn1, self.conv1, self.bn1, in_ch, mid),
                (block.conv2, block.bn2, self.conv2, self.bn2, mid, mid),
                (block.conv3, block.bn3, self.conv3, self.bn3, mid, out)):
            conv.weight.copy_(src_conv.active_weight(i, o))
            copy_batchnorm(src_bn, bn, o)
        if self.down_conv is not None and self.down_bn is not None:
            block.down_conv.weight.copy_(self.down_conv.active_weight(in_ch, out))
            copy_batchnorm(self.down_bn, block.down_bn, out)
        return block

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder the middle channels by L1 importance, most important first (OFA's
        ``re_organize_middle_weights``: conv3's input channels order conv2's outputs, then
        conv2's input channels order conv1's outputs); the full block's function is kept."""
        order = self.conv3.weight.abs().sum(dim=(0, 2, 3)).argsort(descending=True)
        self.conv3.weight.copy_(self.conv3.weight[:, order])
        self.conv2.weight.copy_(self.conv2.weight[order])
        _permute_bn(self.bn2, order)
        order = self.conv2.weight.abs().sum(dim=(0, 2, 3)).argsort(descending=True)
        self.conv2.weight.copy_(self.conv2.weight[:, order])
        self.conv1.weight.copy_(self.conv1.weight[order])
        _permute_bn(self.bn1, order)

    def extra_repr(self) -> str:
        return (f"in<={self.max_in}, out {self.out_choices}, mid<={self.max_mid}, "
                f"e={self.ratios}, stride={self.stride}, downsample={self.downsample}")


def _permute_bn(bn: nn.BatchNorm2d, order: torch.Tensor) -> None:
    for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        t.copy_(t[order])
