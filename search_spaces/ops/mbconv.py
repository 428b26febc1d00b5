"""The elastic inverted-residual (MBConv) block and its static twin.

expand 1x1 + BN + act -> depthwise kxk + BN + act -> SE -> project 1x1 + BN (+ shortcut).
Elastic: kernel size and expand ratio; the middle channels are
``middle_channels(in_ch, ratio)``, the first ones of the stored maximum. Input and output
widths are fixed per slot in every space, so only the middle width moves.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from search_spaces.blueprint import middle_channels, se_channels
from search_spaces.ops.activations import activation_fn, make_activation
from search_spaces.ops.batchnorm import DynamicBatchNorm2d
from search_spaces.ops.depthwise import DynamicDepthwiseConv2d, depthwise_conv2d
from search_spaces.ops.pointwise import DynamicPointwiseConv2d, pointwise_conv2d
from search_spaces.ops.se import DynamicSE, SqueezeExcite

__all__ = ["MBConv", "DynamicMBConv"]


class MBConv(nn.Module):
    """Static inverted-residual block; ``mid_ch == 0`` means no expansion layer.

    ``init=False`` leaves the convolution weights empty (extraction copies them in). The same
    class serves every use: the supernet's fixed first block, every block
    :meth:`DynamicMBConv.extract` produces (:meth:`assemble` from the ops' own extracts), and
    the module a latency table times for a layer (``search_spaces.ops.static``)."""

    def __init__(self, in_ch: int, out_ch: int, mid_ch: int, kernel: int, stride: int, act: str,
                 se: bool, shortcut: bool, bn_eps: float = 1e-5, bn_momentum: float = 0.1,
                 device: torch.device | str | None = None, init: bool = True) -> None:
        super().__init__()
        dw_ch = mid_ch or in_ch
        expand = None
        if mid_ch:
            expand = (pointwise_conv2d(in_ch, mid_ch, device=device, init=init),
                      nn.BatchNorm2d(mid_ch, bn_eps, bn_momentum, device=device))
        self._set_parts(
            expand, depthwise_conv2d(dw_ch, kernel, stride, device, init),
            nn.BatchNorm2d(dw_ch, bn_eps, bn_momentum, device=device),
            SqueezeExcite(dw_ch, se_channels(dw_ch), device, init) if se else None,
            pointwise_conv2d(dw_ch, out_ch, device=device, init=init),
            nn.BatchNorm2d(out_ch, bn_eps, bn_momentum, device=device), act, shortcut)

    @classmethod
    def assemble(cls, expand: tuple[nn.Module, nn.Module] | None, dw_conv: nn.Module,
                 dw_bn: nn.Module, se: nn.Module | None, project_conv: nn.Module,
                 project_bn: nn.Module, act: str, shortcut: bool) -> MBConv:
        """A block from ready parts (the extracted ops of a :class:`DynamicMBConv`)."""
        block = cls.__new__(cls)
        nn.Module.__init__(block)
        block._set_parts(expand, dw_conv, dw_bn, se, project_conv, project_bn, act, shortcut)
        return block

    def _set_parts(self, expand: tuple[nn.Module, nn.Module] | None, dw_conv: nn.Module,
                   dw_bn: nn.Module, se: nn.Module | None, project_conv: nn.Module,
                   project_bn: nn.Module, act: str, shortcut: bool) -> None:
        if expand is not None:
            self.expand_conv, self.expand_bn = expand
            self.expand_act: nn.Module = make_activation(act)
        else:
            self.expand_conv = self.expand_bn = self.expand_act = nn.Identity()
        self.dw_conv, self.dw_bn = dw_conv, dw_bn
        self.dw_act = make_activation(act)
        self.se: nn.Module = se if se is not None else nn.Identity()
        self.project_conv, self.project_bn = project_conv, project_bn
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand_act(self.expand_bn(self.expand_conv(x)))
        h = self.se(self.dw_act(self.dw_bn(self.dw_conv(h))))
        h = self.project_bn(self.project_conv(h))
        return h + x if self.shortcut else h


class DynamicMBConv(nn.Module):
    """Inverted-residual block with elastic kernel and expand ratio (set by :meth:`set_active`).

    The active choice is cached as plain ints so the forward does no arithmetic beyond the
    weight slices.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_sizes: tuple[int, ...],
                 ratios: tuple[int, ...], stride: int, act: str, se: bool, shortcut: bool,
                 kernel_transform: bool, bn_eps: float = 1e-5, bn_momentum: float = 0.1) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride
        self.kernel_sizes = tuple(sorted(set(kernel_sizes)))
        self.ratios = tuple(sorted(set(ratios)))
        self.act, self.use_se, self.shortcut = act, se, shortcut
        self.max_mid = middle_channels(in_ch, self.ratios[-1])
        self.expand_conv = DynamicPointwiseConv2d(in_ch, self.max_mid)
        self.expand_bn = DynamicBatchNorm2d(self.max_mid, bn_eps, bn_momentum)
        self.dw_conv = DynamicDepthwiseConv2d(self.max_mid, self.kernel_sizes, stride,
                                              kernel_transform)
        self.dw_bn = DynamicBatchNorm2d(self.max_mid, bn_eps, bn_momentum)
        self.se = DynamicSE(self.max_mid) if se else None
        self.project_conv = DynamicPointwiseConv2d(self.max_mid, out_ch)
        self.project_bn = nn.BatchNorm2d(out_ch, bn_eps, bn_momentum)
        self._act = activation_fn(act)
        self.set_active(self.kernel_sizes[-1], self.ratios[-1])

    def set_active(self, kernel: int, ratio: int) -> None:
        if kernel not in self.kernel_sizes or ratio not in self.ratios:
            raise ValueError(f"kernel {kernel}/ratio {ratio} not in {self.kernel_sizes}/"
                             f"{self.ratios}")
        self.active_kernel = kernel
        self.active_ratio = ratio
        self.active_mid = middle_channels(self.in_ch, ratio)
        self._se_hidden = se_channels(self.active_mid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid, act = self.active_mid, self._act
        h = act(self.expand_bn(self.expand_conv(x, mid)))
        h = act(self.dw_bn(self.dw_conv(h, self.active_kernel)))
        if self.se is not None:
            h = self.se(h, self._se_hidden)
        h = self.project_bn(self.project_conv(h))
        return h + x if self.shortcut else h

    @torch.no_grad()
    def extract(self) -> MBConv:
        """A static :class:`MBConv` of the active choice, composed of each op's own
        ``extract()`` (copies of the active weights and statistics)."""
        mid, k = self.active_mid, self.active_kernel
        project_bn = self.project_bn.extract(self.out_ch) if isinstance(
            self.project_bn, DynamicBatchNorm2d) else copy.deepcopy(self.project_bn)
        return MBConv.assemble(
            (self.expand_conv.extract(self.in_ch, mid), self.expand_bn.extract(mid)),
            self.dw_conv.extract(mid, k), self.dw_bn.extract(mid),
            self.se.extract(mid) if self.se is not None else None,
            self.project_conv.extract(mid, self.out_ch), project_bn, self.act, self.shortcut)

    @torch.no_grad()
    def sort_channels(self) -> torch.Tensor:
        """Reorder the middle channels by L1 importance of the projection weights (most
        important first) in every layer that touches them; returns the order used."""
        order = self.project_conv.weight.abs().sum(dim=(0, 2, 3)).argsort(descending=True)
        self.project_conv.weight.copy_(self.project_conv.weight[:, order])
        self.expand_conv.weight.copy_(self.expand_conv.weight[order])
        self.dw_conv.weight.copy_(self.dw_conv.weight[order])
        for bn in (self.expand_bn, self.dw_bn):
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                t.copy_(t[order])
        if self.se is not None:
            self.se.permute_channels(order)
            self.se.sort_hidden()
        return order

    def extra_repr(self) -> str:
        return (f"{self.in_ch}->{self.out_ch}, mid<={self.max_mid}, k={self.kernel_sizes}, "
                f"e={self.ratios}, stride={self.stride}, act={self.act}, se={self.use_se}, "
                f"shortcut={self.shortcut}")

