"""The supernet base class and the static subnet it extracts.

A :class:`Supernet` is built from a :class:`~search_spaces.blueprint.NetworkPlan` (widths,
strides, activations come from there, never recomputed here) and a
:class:`~search_spaces.space.SearchSpace` (which choices exist). Its layout is: a static stem, a
``blocks`` list whose entry 0 is the fixed first block and entries 1.. are the elastic slots
(so block indices match OFA's checkpoints), a family-specific static ``head``, dropout and the
classifier. Only the active blocks of each stage run.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from search_spaces.arch import ArchConfig
from search_spaces.blueprint import NetworkPlan
from search_spaces.ops import ConvBNAct, DynamicMBConv, MBConv
from search_spaces.space import SearchSpace

__all__ = ["Supernet", "Subnet"]


class Subnet(nn.Module):
    """A standalone static network: stem, blocks, head, dropout, classifier.

    Built only from plain PyTorch layers (and the small static twins in ``ops``), so it runs
    under ``torch.export`` and TorchScript and holds no reference to the supernet.
    """

    def __init__(self, stem: nn.Module, blocks: Sequence[nn.Module], head: nn.Module,
                 dropout: float, classifier: nn.Linear) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.head = head
        self.dropout = nn.Dropout(dropout)
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(torch.flatten(x, 1)))


class Supernet(nn.Module):
    """An elastic network over ``space``; subclasses supply the family's head.

    Attributes: ``space`` (SearchSpace), ``plan`` (NetworkPlan), ``spec`` (JSON-ready kwargs
    for :func:`search_spaces.registry.create_supernet` that rebuild the same shapes),
    ``stage_blocks`` (indices into ``blocks`` of each stage's slots), ``active_arch``.
    """

    KERNEL_SIZES: tuple[int, ...] = (3, 5, 7)
    EXPAND_RATIOS: tuple[int, ...] = (3, 4, 6)

    def __init__(self, space: SearchSpace, plan: NetworkPlan, *, dropout: float,
                 spec: dict[str, Any]) -> None:
        super().__init__()
        if plan.family != space.family or tuple(s.n_slots for s in plan.stages) != space.n_slots:
            raise ValueError(f"plan ({plan.family}) does not fit space {space.name}")
        self.space, self.plan, self.spec = space, plan, dict(spec)
        eps, mom = plan.bn_eps, plan.bn_momentum
        self.stem = ConvBNAct(3, plan.stem_ch, 3, plan.stem_stride, plan.stem_act, True, eps, mom)
        fb = plan.first_block
        blocks: list[nn.Module] = [MBConv(fb.in_ch, fb.out_ch, 0, fb.kernel, fb.stride, fb.act,
                                          fb.se, fb.shortcut, eps, mom)]
        self.stage_blocks: list[list[int]] = []
        c = fb.out_ch
        for st in plan.stages:
            idx = []
            for b in range(st.n_slots):
                stride = st.stride if b == 0 else 1
                idx.append(len(blocks))
                blocks.append(DynamicMBConv(
                    c, st.width, self.KERNEL_SIZES, self.EXPAND_RATIOS, stride, st.act, st.se,
                    shortcut=stride == 1 and c == st.width,
                    kernel_transform=space.kernel_transform, bn_eps=eps, bn_momentum=mom))
                c = st.width
            self.stage_blocks.append(idx)
        self.blocks = nn.ModuleList(blocks)
        self.head = self.build_head(c)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(plan.feature_mix_ch, plan.n_classes)
        bound = 1.0 / math.sqrt(plan.feature_mix_ch)
        nn.init.uniform_(self.classifier.weight, -bound, bound)
        nn.init.zeros_(self.classifier.bias)
        self._active: list[int] = []
        self.active_arch = self.set_active(space.largest())

    def build_head(self, in_ch: int) -> nn.Module:
        """The family's static layers between the last block and the classifier input."""
        raise NotImplementedError

    # ------------------------------------------------------------------ elastic
    def set_active(self, arch: ArchConfig) -> ArchConfig:
        """Make ``arch`` the subnet that :meth:`forward` runs (validated against the space)."""
        self.space.validate(arch)
        active = [0]
        for idx, ks, es in zip(self.stage_blocks, arch.ks, arch.e):
            for i, k, e in zip(idx, ks, es):
                self.blocks[i].set_active(k, e)
                active.append(i)
        self._active = active
        self.active_arch = arch
        return arch

    def forward(self, x: torch.Tensor, dropout: float | None = None) -> torch.Tensor:
        """Run the active subnet. ``dropout`` overrides the classifier dropout rate for this
        call only (DεpS drops out on the full model only) without touching the module, so a
        step's subnets can differ in dropout and the module stays as built."""
        x = self.stem(x)
        blocks = self.blocks
        for i in self._active:
            x = blocks[i](x)
        x = torch.flatten(self.head(x), 1)
        x = (self.dropout(x) if dropout is None
             else nn.functional.dropout(x, dropout, self.training))
        return self.classifier(x)

    @torch.no_grad()
    def extract(self, arch: ArchConfig | None = None) -> Subnet:
        """A static copy of ``arch`` (default: the active one), in this supernet's train/eval
        mode; the supernet's active arch is left as it was."""
        previous = self.active_arch
        if arch is not None:
            self.set_active(arch)
        try:
            blocks = [copy.deepcopy(self.blocks[0])]
            blocks += [self.blocks[i].extract() for i in self._active[1:]]
            net = Subnet(copy.deepcopy(self.stem), blocks, copy.deepcopy(self.head),
                         self.dropout.p, copy.deepcopy(self.classifier))
        finally:
            self.set_active(previous)
        return net.train(self.training)

    @torch.no_grad()
    def sort_channels(self, keep_ratios: Sequence[int] = ()) -> None:
        """Reorder every elastic block's middle channels by importance so that every smaller
        width keeps the most important channels; the full network's function is unchanged.
        ``keep_ratios``: the channel groups of these (largest) ratios, trained by the phase
        before, stay in front (OFA's second expand phase; ``DynamicMBConv.sort_channels``)."""
        for idx in self.stage_blocks:
            for i in idx:
                self.blocks[i].sort_channels(keep_ratios)

    def dynamic_blocks(self) -> list[DynamicMBConv]:
        return [self.blocks[i] for idx in self.stage_blocks for i in idx]
