"""OFA ProxylessNAS supernet.

Same layout as ``mobilenet_v3.py``: head block, network class, ``_create_*``, architecture as
data, one-line constructors. Widths, strides and relu6 come from
``blueprint.network_plan("proxyless", ...)``; BN eps is 1e-3 there.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import nn

from search_spaces.blueprint import network_plan
from search_spaces.ops import ConvBNAct, GlobalAvgPool
from search_spaces.space import SearchSpace
from search_spaces.supernet import Supernet

__all__ = ["ProxylessSupernet"]


def proxyless_head(in_ch: int, mix_ch: int, act: str, bn_eps: float,
                   bn_momentum: float) -> nn.Sequential:
    """1x1 feature mix + BN + relu6 before the global pool."""
    return nn.Sequential(OrderedDict([
        ("feature_mix", ConvBNAct(in_ch, mix_ch, 1, 1, act, True, bn_eps, bn_momentum)),
        ("pool", GlobalAvgPool()),
    ]))


class ProxylessSupernet(Supernet):
    """OFA ProxylessNAS with elastic kernel, expand ratio and depth."""

    KERNEL_SIZES = (3, 5, 7)
    EXPAND_RATIOS = (3, 4, 6)

    def build_head(self, in_ch: int) -> nn.Module:
        p = self.plan
        return proxyless_head(in_ch, p.feature_mix_ch, p.feature_mix_act, p.bn_eps,
                              p.bn_momentum)


def _create_proxyless(space: SearchSpace, *, width_mult: float = 1.0, n_classes: int = 1000,
                      small_input: bool = False, dropout: float = 0.1,
                      spec: dict[str, Any] | None = None) -> ProxylessSupernet:
    plan = network_plan("proxyless", width_mult, n_classes, small_input, n_slots=space.n_slots)
    spec = spec or {"space": space.name, "width_mult": width_mult, "n_classes": n_classes,
                    "small_input": small_input, "dropout": dropout}
    return ProxylessSupernet(space, plan, dropout=dropout, spec=spec)
