"""Elastic-kernel depthwise convolution and its static twin.

Weights are stored at the largest kernel (7x7); a smaller kernel takes the centre. With
``kernel_transform`` (OFA's spaces) each shrink step also passes the centre through a learned
matrix, identity at init: the 5x5 centre of the 7x7 is flattened and multiplied by a 25x25
matrix, and the 3x3 is the centre of that *transformed* 5x5, multiplied by a 9x9 matrix. This is
why the 3x3 kernel of a trained OFA supernet is not a plain crop. Channels are elastic too: the
first ``channels`` filters are used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.ops.pointwise import conv2d_uninitialised

__all__ = ["DynamicDepthwiseConv2d", "depthwise_conv2d", "matrix_name"]


def matrix_name(big: int, small: int) -> str:
    """Parameter name of the transform from ``big`` to ``small`` (OFA calls it ``7to5_matrix``)."""
    return f"matrix_{big}to{small}"


def depthwise_conv2d(channels: int, kernel: int, stride: int,
                     device: torch.device | str | None = None, init: bool = True) -> nn.Conv2d:
    """The static twin: a plain 'same'-padded depthwise convolution without bias
    (``init=False``: weights left empty, to be copied in)."""
    make = nn.Conv2d if init else conv2d_uninitialised
    return make(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False,
                device=device)


class DynamicDepthwiseConv2d(nn.Module):
    """Depthwise convolution with elastic kernel size and channel count."""

    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...], stride: int,
                 kernel_transform: bool) -> None:
        super().__init__()
        self.max_channels = max_channels
        self.kernel_sizes = tuple(sorted(set(kernel_sizes)))
        self.max_kernel = self.kernel_sizes[-1]
        self.stride = stride
        self.kernel_transform = kernel_transform
        self.weight = nn.Parameter(torch.empty(max_channels, 1, self.max_kernel, self.max_kernel))
        self._steps: list[tuple[int, int, str]] = []
        if kernel_transform:
            for small, big in zip(self.kernel_sizes[:-1], self.kernel_sizes[1:]):
                name = matrix_name(big, small)
                self.register_parameter(name, nn.Parameter(torch.eye(small * small)))
                self._steps.append((big, small, name))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """OFA's ``he_fout`` init; transform matrices back to identity."""
        n = self.max_kernel * self.max_kernel * self.max_channels
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / n))
        for _, small, name in self._steps:
            with torch.no_grad():
                getattr(self, name).copy_(torch.eye(small * small))

    def active_weight(self, channels: int, kernel: int) -> torch.Tensor:
        """The ``[channels, 1, kernel, kernel]`` filter the subnet uses (differentiable)."""
        if kernel not in self.kernel_sizes:
            raise ValueError(f"kernel {kernel} not in {self.kernel_sizes}")
        w = self.weight[:channels]
        if kernel == self.max_kernel:
            return w
        if not self.kernel_transform:
            s = (self.max_kernel - kernel) // 2
            return w[:, :, s:s + kernel, s:s + kernel]
        cur, size = w, self.max_kernel
        for big, small, name in reversed(self._steps):
            if big > size:
                continue
            if small < kernel:
                break
            s = (big - small) // 2
            flat = cur[:, 0, s:s + small, s:s + small].reshape(channels, small * small)
            cur = (flat @ getattr(self, name).t()).view(channels, 1, small, small)
            size = small
        return cur

    def forward(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        channels = x.shape[1]
        return F.conv2d(x, self.active_weight(channels, kernel), None, self.stride, kernel // 2,
                        1, channels)

    @torch.no_grad()
    def extract(self, channels: int, kernel: int) -> nn.Conv2d:
        conv = depthwise_conv2d(channels, kernel, self.stride, self.weight.device, init=False)
        conv.weight.copy_(self.active_weight(channels, kernel))
        return conv

    def extra_repr(self) -> str:
        return (f"{self.max_channels}, kernels={self.kernel_sizes}, stride={self.stride}, "
                f"transform={self.kernel_transform}")
