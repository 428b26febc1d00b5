"""OFA's ResNet50D supernet as data, and the per-layer walk of one of its subnets.

The numbers are OFA's ``OFAResNets`` (``ofa/imagenet_classification/elastic_nn/networks/
ofa_resnets.py`` and ``networks/resnets.py`` of the ``ofa`` package, v0.1.0):

* base depths 2, 2, 4, 2 plus 0/1/2 extra blocks per stage (``BASE_DEPTH_LIST``,
  ``depth_list=[0, 1, 2]``), so 4, 4, 6, 4 block slots;
* stage widths 256, 512, 1024, 2048 (``STAGE_WIDTH_LIST``), stage strides 1, 2, 2, 2;
* width multipliers 0.65, 0.8, 1.0, each width ``make_divisible(width * mult, 8)``;
* the ResNet-D stem: 3x3 stride-2 conv to ``make_divisible(stem // 2, 8)`` channels, a
  residual 3x3 conv at that width (the one ``d[0]`` may skip), a 3x3 conv to the stem width
  ``make_divisible(64 * mult, 8)``, then 3x3 stride-2 max pooling;
* bottleneck blocks whose middle width is ``make_divisible(round(out * ratio), 8)`` of the
  block's *output* width (ratios 0.2, 0.25, 0.35), stride on the 3x3 conv, and the ResNet-D
  downsample (2x2 average pooling, then a 1x1 conv and BN) where shapes change;
* BN momentum 0.1 and eps 1e-5, ReLU everywhere.

Small-input variant (``small_input=True``, 32x32 images such as CIFAR-10): the first stem conv
has stride 1 and the max pooling is left out, so the network downsamples 8x instead of 32x (a
32x32 input ends in a 4x4 map), as the MobileNetV3 small-input variant does.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.blueprint import LayerShape, conv_out, make_divisible

__all__ = [
    "RESNET_FAMILY", "BASE_DEPTHS", "EXTRA_DEPTHS", "RATIOS", "WIDTH_MULTS", "STAGE_WIDTHS",
    "STAGE_STRIDES", "STEM_WIDTH", "STEM_DEPTHS", "ResNetPlan", "resnet_plan",
    "bottleneck_mid_channels", "resnet_layer_shapes",
]

RESNET_FAMILY = "resnet"
BASE_DEPTHS = (2, 2, 4, 2)  # OFA ResNets.BASE_DEPTH_LIST
EXTRA_DEPTHS = (0, 1, 2)  # OFA OFAResNets depth_list
RATIOS = (0.2, 0.25, 0.35)  # OFA OFAResNets expand_ratio_list
WIDTH_MULTS = (0.65, 0.8, 1.0)  # OFA OFAResNets width_mult_list
STAGE_WIDTHS = (256, 512, 1024, 2048)  # OFA ResNets.STAGE_WIDTH_LIST
STAGE_STRIDES = (1, 2, 2, 2)
STEM_WIDTH = 64
STEM_DEPTHS = (0, 2)  # d[0]: OFA samples max or min depth for the stem (skip iff not max)


def bottleneck_mid_channels(out_ch: int, ratio: float) -> int:
    """Middle width of a bottleneck with ``out_ch`` active output channels (OFA rounds the
    product half-to-even, as Python's ``round`` does)."""
    return make_divisible(round(out_ch * ratio), 8)


@dataclass(frozen=True)
class ResNetPlan:
    """The ResNet50D supernet's fixed shape. Every ``*_ch`` tuple is indexed by width index.

    ``width_mult`` is always 1.0 (the elastic widths are the point of this family) and
    exists so code that names a supernet by family and width treats every family alike.
    """

    n_classes: int
    small_input: bool
    width_mults: tuple[float, ...]
    stem_mid_ch: tuple[int, ...]
    stem_out_ch: tuple[int, ...]
    stage_ch: tuple[tuple[int, ...], ...]
    base_depths: tuple[int, ...]
    n_slots: tuple[int, ...]
    strides: tuple[int, ...]
    ratios: tuple[float, ...]
    stem_stride: int
    max_pool: bool
    family: str = RESNET_FAMILY
    width_mult: float = 1.0
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1

    @property
    def max_mid_ch(self) -> tuple[int, ...]:
        """Stored middle width of every stage's blocks (largest width, largest ratio)."""
        return tuple(bottleneck_mid_channels(max(ch), max(self.ratios)) for ch in self.stage_ch)

    @property
    def feature_ch(self) -> int:
        """Classifier input width at the largest stage-4 width."""
        return max(self.stage_ch[-1])


def resnet_plan(width_mult: float = 1.0, n_classes: int = 1000,
                small_input: bool = False) -> ResNetPlan:
    """OFA's ResNet50D supernet; ``width_mult`` must be 1.0 (the widths are elastic)."""
    if width_mult != 1.0:
        raise ValueError(f"the ResNet50D supernet has elastic widths {list(WIDTH_MULTS)}; "
                         f"width_mult must be 1.0, got {width_mult:g}")
    stem_out = tuple(make_divisible(STEM_WIDTH * m, 8) for m in WIDTH_MULTS)
    stem_mid = tuple(make_divisible(c // 2, 8) for c in stem_out)
    stage_ch = tuple(tuple(make_divisible(w * m, 8) for m in WIDTH_MULTS) for w in STAGE_WIDTHS)
    return ResNetPlan(
        n_classes=n_classes, small_input=small_input, width_mults=WIDTH_MULTS,
        stem_mid_ch=stem_mid, stem_out_ch=stem_out, stage_ch=stage_ch, base_depths=BASE_DEPTHS,
        n_slots=tuple(b + max(EXTRA_DEPTHS) for b in BASE_DEPTHS), strides=STAGE_STRIDES,
        ratios=RATIOS, stem_stride=1 if small_input else 2, max_pool=not small_input)


def resnet_layer_shapes(plan: ResNetPlan, arch: object) -> list[LayerShape]:
    """Walk the ResNet subnet ``arch`` (a :class:`~search_spaces.resnet_arch.ResNetArch`)
    layer by layer at resolution ``arch.r``.

    Kinds: ``stem`` (a 3x3 conv + BN + ReLU; ``shortcut`` marks the residual one),
    ``maxpool``, ``bottleneck`` (``mid_ch`` the middle width; ``shortcut`` True for an
    identity shortcut, False for the average-pool + 1x1 conv downsample), ``pool``,
    ``classifier``.
    """
    d, e, w, r = arch.d, arch.e, arch.w, arch.r  # type: ignore[attr-defined]
    if len(e) != len(plan.stage_ch) or len(w) != 2 + len(plan.stage_ch) or len(d) != 5:
        raise ValueError(f"arch does not fit the ResNet plan (d {list(d)}, w {list(w)}, "
                         f"{len(e)} stages)")
    layers: list[LayerShape] = []
    hw = r
    mid, c_out = plan.stem_mid_ch[w[0]], plan.stem_out_ch[w[1]]
    out = conv_out(hw, plan.stem_stride)
    layers.append(LayerShape("stem", hw, out, 3, mid, kernel=3, stride=plan.stem_stride,
                             act="relu"))
    hw = out
    if d[0] != 0:
        layers.append(LayerShape("stem", hw, hw, mid, mid, kernel=3, act="relu", shortcut=True))
    layers.append(LayerShape("stem", hw, hw, mid, c_out, kernel=3, act="relu"))
    c = c_out
    if plan.max_pool:
        out = conv_out(hw, 2)
        layers.append(LayerShape("maxpool", hw, out, c, c, kernel=3, stride=2, bn=False))
        hw = out
    for si, (ratios, wi) in enumerate(zip(e, w[2:])):
        width = plan.stage_ch[si][wi]
        for bi, ratio in enumerate(ratios):
            stride = plan.strides[si] if bi == 0 else 1
            out = conv_out(hw, stride)
            identity = stride == 1 and bi > 0  # OFA: in and out width lists equal
            layers.append(LayerShape(
                "bottleneck", hw, out, c, width, kernel=3, stride=stride,
                mid_ch=bottleneck_mid_channels(width, ratio), act="relu", shortcut=identity,
                stage=si))
            hw, c = out, width
    layers.append(LayerShape("pool", hw, 1, c, c, bn=False))
    layers.append(LayerShape("classifier", 1, 1, c, plan.n_classes, bn=False))
    return layers
