"""The static module of one layer of a subnet, as the supernet's ``extract`` builds it.

A latency table (or the lazily measured latency of a search) times layers one at a time;
timing anything but the module that is exported would measure a different network (issue 16:
the measuring code once kept its own MBConv, and an unknown activation silently became an
identity). So every layer kind of ``blueprint.layer_shapes`` maps here to the class the
supernet itself uses for it, built by that class's own constructor.
"""

from __future__ import annotations

from torch import nn

from search_spaces.blueprint import LayerShape
from search_spaces.ops.conv_bn_act import ConvBNAct, GlobalAvgPool
from search_spaces.ops.mbconv import MBConv

__all__ = ["static_layer"]


class _Classifier(nn.Module):
    """Flatten, then the supernet's ``nn.Linear`` (``Subnet`` flattens before it)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)

    def forward(self, x):  # noqa: ANN001, ANN201 - a tensor in, a tensor out
        return self.linear(x.flatten(1))


def static_layer(layer: LayerShape) -> nn.Module:
    """The module for ``layer`` (random weights: latency does not depend on them). An unknown
    activation or layer kind is a ``ValueError``, never a silent stand-in."""
    if layer.kind == "block":
        return MBConv(layer.in_ch, layer.out_ch, layer.mid_ch, layer.kernel, layer.stride,
                      layer.act, layer.se, layer.shortcut)
    if layer.kind in ("stem", "final_expand", "feature_mix"):
        return ConvBNAct(layer.in_ch, layer.out_ch, layer.kernel, layer.stride,
                         layer.act or None, layer.bn)
    if layer.kind == "pool":
        return GlobalAvgPool()
    if layer.kind == "classifier":
        return _Classifier(layer.in_ch, layer.out_ch)
    raise ValueError(f"no static module for layer kind {layer.kind!r}")
