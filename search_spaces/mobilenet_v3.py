"""OFA MobileNetV3 supernet.

Layout (timm model-file order): the family's head block, the network class, its
``_create_*`` function, the architecture as data, and one-line constructors per registered
space at the bottom. Widths, strides, activations and SE placement come from
``blueprint.network_plan("mbv3", ...)``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

from search_spaces.blueprint import network_plan
from search_spaces.ops import ConvBNAct, GlobalAvgPool
from search_spaces.space import SearchSpace
from search_spaces.supernet import Supernet

__all__ = ["MobileNetV3Supernet"]


def mbv3_head(in_ch: int, final_expand_ch: int, mix_ch: int, act: str, bn_eps: float,
              bn_momentum: float) -> nn.Sequential:
    """1x1 expand + BN + h-swish, global pool, 1x1 feature mix (no BN) + h-swish."""
    return nn.Sequential(OrderedDict([
        ("final_expand", ConvBNAct(in_ch, final_expand_ch, 1, 1, "h_swish", True, bn_eps,
                                   bn_momentum)),
        ("pool", GlobalAvgPool()),
        ("feature_mix", ConvBNAct(final_expand_ch, mix_ch, 1, 1, act, bn=False)),
    ]))


class MobileNetV3Supernet(Supernet):
    """OFA MobileNetV3 with elastic kernel, expand ratio and depth."""

    KERNEL_SIZES = (3, 5, 7)
    EXPAND_RATIOS = (3, 4, 6)

    def build_head(self, in_ch: int) -> nn.Module:
        p = self.plan
        if p.final_expand_ch is None:
            raise ValueError("a MobileNetV3 plan needs final_expand_ch")
        return mbv3_head(in_ch, p.final_expand_ch, p.feature_mix_ch, p.feature_mix_act,
                         p.bn_eps, p.bn_momentum)


def _create_mobilenet_v3(space: SearchSpace, *, width_mult: float = 1.0, n_classes: int = 1000,
                         small_input: bool = False, dropout: float = 0.1,
                         spec: dict[str, Any] | None = None) -> MobileNetV3Supernet:
    plan = network_plan("mbv3", width_mult, n_classes, small_input, n_slots=space.n_slots)
    spec = spec or {"space": space.name, "width_mult": width_mult, "n_classes": n_classes,
                    "small_input": small_input, "dropout": dropout}
    return MobileNetV3Supernet(space, plan, dropout=dropout, spec=spec)
