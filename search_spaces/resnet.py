"""OFA ResNet50D supernet and the static subnet it extracts.

Layout (as OFA's ``OFAResNets``, under our own module names): an elastic ResNet-D ``stem``,
3x3 stride-2 max pooling (left out for small inputs), ``blocks`` (4 + 4 + 6 + 4 bottleneck
slots; each stage runs its first ``base + d`` slots), global average pooling, dropout and the
classifier. Widths, strides and slot counts come from :mod:`search_spaces.resnet_plan`; which
choices exist from a :class:`~search_spaces.resnet_space.ResNetSpace`. It has the same
interface as the MobileNetV3 supernet (``space``, ``plan``, ``spec``, ``set_active``,
``forward``, ``extract``, ``sort_channels``), so training, search, BN recalibration and
extraction treat both alike.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from search_spaces.ops.bottleneck import DynamicBottleneck
from search_spaces.ops.linear import DynamicLinear
from search_spaces.ops.resnet_stem import DynamicResNetStem
from search_spaces.resnet_arch import ResNetArch
from search_spaces.resnet_plan import ResNetPlan, resnet_plan
from search_spaces.resnet_space import ResNetSpace

__all__ = ["ResNetSupernet", "ResNetSubnet", "ofa_resnet50"]


def _global_pool(x: torch.Tensor) -> torch.Tensor:
    """Mean over width then height, as OFA's ``MyGlobalAvgPool2d`` (same rounding order)."""
    return x.mean(3).mean(2)


def _max_pool(plan: ResNetPlan) -> nn.Module:
    return nn.MaxPool2d(3, 2, 1) if plan.max_pool else nn.Identity()


class ResNetSubnet(nn.Module):
    """A standalone static ResNet50D subnet of plain PyTorch layers (exports and scripts)."""

    def __init__(self, stem: nn.Module, pool: nn.Module, blocks: Sequence[nn.Module],
                 dropout: float, classifier: nn.Linear) -> None:
        super().__init__()
        self.stem = stem
        self.pool = pool
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.pool(self.stem(x)))
        return self.classifier(self.dropout(_global_pool(x)))


class ResNetSupernet(nn.Module):
    """OFA's ResNet50D with elastic depth (stages and stem), expand ratio and width.

    Attributes: ``space`` (ResNetSpace), ``plan`` (ResNetPlan), ``spec`` (JSON-ready kwargs
    for :func:`search_spaces.registry.create_supernet`), ``stage_blocks`` (indices into
    ``blocks`` of each stage's slots), ``active_arch``.
    """

    def __init__(self, space: ResNetSpace, plan: ResNetPlan, *, dropout: float,
                 spec: dict[str, Any]) -> None:
        super().__init__()
        if tuple(plan.n_slots) != space.n_slots:
            raise ValueError(f"plan does not fit space {space.name}")
        self.space, self.plan, self.spec = space, plan, dict(spec)
        eps, mom = plan.bn_eps, plan.bn_momentum
        self.stem = DynamicResNetStem(plan.stem_mid_ch, plan.stem_out_ch, plan.stem_stride,
                                      eps, mom)
        self.pool = _max_pool(plan)
        blocks: list[DynamicBottleneck] = []
        self.stage_blocks: list[list[int]] = []
        c = max(plan.stem_out_ch)
        for widths, stride, n in zip(plan.stage_ch, plan.strides, plan.n_slots):
            idx = []
            for b in range(n):
                idx.append(len(blocks))
                blocks.append(DynamicBottleneck(c, widths, plan.ratios, stride if b == 0 else 1,
                                                downsample=b == 0, bn_eps=eps, bn_momentum=mom))
                c = max(widths)
            self.stage_blocks.append(idx)
        self.blocks = nn.ModuleList(blocks)
        self.dropout = nn.Dropout(dropout)
        self.classifier = DynamicLinear(c, plan.n_classes)
        self._active: list[int] = []
        self._in_ch: list[int] = []
        self.active_arch = self.set_active(space.largest())

    # ------------------------------------------------------------------ elastic
    def set_active(self, arch: ResNetArch) -> ResNetArch:
        """Make ``arch`` the subnet that :meth:`forward` runs (validated against the space)."""
        self.space.validate(arch)
        p = self.plan
        self.stem.set_active(p.stem_mid_ch[arch.w[0]], p.stem_out_ch[arch.w[1]],
                             residual=arch.d[0] != 0)
        active, in_ch = [], []
        c = p.stem_out_ch[arch.w[1]]
        for s, (idx, ratios) in enumerate(zip(self.stage_blocks, arch.e)):
            width = p.stage_ch[s][arch.w[2 + s]]
            for i, ratio in zip(idx, ratios):
                self.blocks[i].set_active(width, ratio)
                active.append(i)
                in_ch.append(c)
                c = width
        self._active, self._in_ch = active, in_ch
        self.active_arch = arch
        return arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stem(x))
        blocks = self.blocks
        for i in self._active:
            x = blocks[i](x)
        return self.classifier(self.dropout(_global_pool(x)))

    @torch.no_grad()
    def extract(self, arch: ResNetArch | None = None) -> ResNetSubnet:
        """A static copy of ``arch`` (default: the active one), in this supernet's train/eval
        mode; the supernet's active arch is left as it was."""
        previous = self.active_arch
        if arch is not None:
            self.set_active(arch)
        try:
            blocks = [self.blocks[i].extract(c) for i, c in zip(self._active, self._in_ch)]
            feat = self.plan.stage_ch[-1][self.active_arch.w[-1]]
            net = ResNetSubnet(self.stem.extract(), copy.deepcopy(self.pool), blocks,
                               self.dropout.p, self.classifier.extract(feat, self.plan.n_classes))
        finally:
            self.set_active(previous)
        return net.train(self.training)

    @torch.no_grad()
    def sort_channels(self) -> None:
        """Reorder every bottleneck's middle channels by importance (OFA's
        ``re_organize_middle_weights``) so smaller ratios keep the most important channels."""
        for block in self.blocks:
            block.sort_channels()

    def dynamic_blocks(self) -> list[DynamicBottleneck]:
        return list(self.blocks)


def _create_resnet(space: ResNetSpace, *, width_mult: float = 1.0, n_classes: int = 1000,
                   small_input: bool = False, dropout: float = 0.1,
                   spec: dict[str, Any] | None = None) -> ResNetSupernet:
    plan = resnet_plan(width_mult, n_classes, small_input)
    spec = spec or {"space": space.name, "width_mult": width_mult, "n_classes": n_classes,
                    "small_input": small_input, "dropout": dropout}
    return ResNetSupernet(space, plan, dropout=dropout, spec=spec)


# Architecture as data: the space this file serves.
SPACES = ("ofa_resnet50",)


def ofa_resnet50(**kwargs: Any) -> ResNetSupernet:
    from search_spaces.registry import create_supernet

    net = create_supernet("ofa_resnet50", **kwargs)
    assert isinstance(net, ResNetSupernet)
    return net
