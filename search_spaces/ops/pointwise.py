"""Elastic 1x1 convolution (first input and output channels) and its static twin."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DynamicPointwiseConv2d", "pointwise_conv2d", "conv2d_uninitialised"]


class _Conv2dSkipInit(nn.Conv2d):
    def reset_parameters(self) -> None:  # the caller copies the weights in
        pass


def conv2d_uninitialised(*args: object, **kwargs: object) -> nn.Conv2d:
    """A plain ``nn.Conv2d`` whose weights are left uninitialised, for extraction: the random
    init would be overwritten at once and costs most of an extraction's time."""
    conv = _Conv2dSkipInit(*args, **kwargs)  # type: ignore[arg-type]
    conv.__class__ = nn.Conv2d  # same layout: from here on an ordinary nn.Conv2d
    return conv


def pointwise_conv2d(in_ch: int, out_ch: int, bias: bool = False,
                     device: torch.device | str | None = None, init: bool = True) -> nn.Conv2d:
    """The static twin: a plain 1x1 convolution (``init=False``: weights left empty)."""
    make = nn.Conv2d if init else conv2d_uninitialised
    return make(in_ch, out_ch, 1, bias=bias, device=device)


class DynamicPointwiseConv2d(nn.Module):
    """1x1 convolution whose active part is ``weight[:out, :in]`` (``in`` from the input)."""

    def __init__(self, max_in: int, max_out: int) -> None:
        super().__init__()
        self.max_in, self.max_out = max_in, max_out
        self.weight = nn.Parameter(torch.empty(max_out, max_in, 1, 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """OFA's ``he_fout`` init."""
        nn.init.normal_(self.weight, 0.0, math.sqrt(2.0 / self.max_out))

    def active_weight(self, in_ch: int, out_ch: int) -> torch.Tensor:
        w = self.weight
        if out_ch != self.max_out:
            w = w[:out_ch]
        if in_ch != self.max_in:
            w = w[:, :in_ch]
        return w

    def forward(self, x: torch.Tensor, out_ch: int | None = None) -> torch.Tensor:
        return F.conv2d(x, self.active_weight(x.shape[1], out_ch or self.max_out))

    @torch.no_grad()
    def extract(self, in_ch: int, out_ch: int) -> nn.Conv2d:
        conv = pointwise_conv2d(in_ch, out_ch, device=self.weight.device, init=False)
        conv.weight.copy_(self.active_weight(in_ch, out_ch))
        return conv

    def extra_repr(self) -> str:
        return f"{self.max_in}, {self.max_out}"
