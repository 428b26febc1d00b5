"""The architecture of each supernet family as data, and the per-layer walk of a subnet.

One place says what the OFA MobileNetV3 and ProxylessNAS networks are (widths, strides,
activations, squeeze-excite, shortcuts). The torch supernets are built from a
:class:`NetworkPlan`; the analytic MACs/parameter counter and the latency lookup tables walk
:func:`layer_shapes`. Neither repeats the channel arithmetic.

Small-input variant (``small_input=True``, for 32x32 images such as CIFAR-10): the stem and
the first elastic stage use stride 1 instead of 2, so the network downsamples 8x instead of
32x and a 32x32 input ends in a 4x4 feature map rather than 1x1.
"""

from __future__ import annotations

from dataclasses import dataclass

from search_spaces.arch import ArchConfig

__all__ = [
    "make_divisible", "middle_channels", "se_channels", "conv_out", "BlockPlan", "StagePlan",
    "NetworkPlan", "LayerShape", "network_plan", "layer_shapes", "FAMILIES",
]

FAMILIES = ("mbv3", "proxyless", "resnet")


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round to the nearest multiple of ``divisor`` (at least ``min_value``), adding one more
    ``divisor`` when rounding lost more than 10% (OFA/MobileNet convention)."""
    min_value = divisor if min_value is None else min_value
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def middle_channels(in_channels: int, ratio: int) -> int:
    """Active expanded channels of an inverted-residual block (the first ones are used)."""
    return make_divisible(round(in_channels * ratio), 8)


def se_channels(mid_channels: int) -> int:
    """Squeeze-excite bottleneck width for ``mid_channels`` active channels (reduction 4)."""
    return make_divisible(mid_channels // 4, 8)


def conv_out(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded odd-kernel convolution with ``stride``."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class BlockPlan:
    """The fixed first block (depthwise 3x3, no expansion)."""

    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    act: str
    se: bool
    shortcut: bool


@dataclass(frozen=True)
class StagePlan:
    """One elastic stage: ``n_slots`` blocks; the first has ``stride``, the rest stride 1."""

    width: int
    stride: int
    act: str
    se: bool
    n_slots: int


@dataclass(frozen=True)
class NetworkPlan:
    family: str
    width_mult: float
    n_classes: int
    small_input: bool
    stem_ch: int
    stem_stride: int
    stem_act: str
    first_block: BlockPlan
    stages: tuple[StagePlan, ...]
    final_expand_ch: int | None  # MobileNetV3's 1x1 expansion before the pool; None for Proxyless
    feature_mix_ch: int
    feature_mix_bn: bool  # Proxyless: 1x1 + BN before the pool; MobileNetV3: 1x1 without BN after
    feature_mix_act: str
    bn_eps: float
    bn_momentum: float = 0.1

    def stage_input_channels(self) -> tuple[int, ...]:
        """Input width of each stage's first block."""
        ins, c = [], self.first_block.out_ch
        for st in self.stages:
            ins.append(c)
            c = st.width
        return tuple(ins)


@dataclass(frozen=True)
class _Trunk:
    """What distinguishes one MBConv family's network at a width: stem, first block, stage
    widths/strides/activations/SE, default depths and the head."""

    stem: int
    first: BlockPlan
    stage_widths: tuple[int, ...]
    strides: tuple[int, ...]
    acts: tuple[str, ...]
    ses: tuple[bool, ...]
    slots: tuple[int, ...]
    final_expand: int | None
    mix: int
    stem_act: str
    mix_act: str
    mix_bn: bool
    eps: float


def _mbv3_trunk(width_mult: float) -> _Trunk:
    """MobileNetV3-Large as OFA builds it (``OFAMobileNetV3``)."""
    base = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
    widths = [make_divisible(b * width_mult, 8) for b in base[:-2]]
    stem = widths[0]
    return _Trunk(
        stem=stem,
        first=BlockPlan(in_ch=stem, out_ch=widths[1], kernel=3, stride=1, act="relu",
                        se=False, shortcut=stem == widths[1]),
        stage_widths=tuple(widths[2:]), strides=(2, 2, 2, 1, 2),
        acts=("relu", "relu", "h_swish", "h_swish", "h_swish"),
        ses=(False, True, False, True, True), slots=(4,) * 5,
        final_expand=make_divisible(base[-2] * width_mult, 8),
        mix=make_divisible(base[-1] * width_mult, 8),
        stem_act="h_swish", mix_act="h_swish", mix_bn=False, eps=1e-5)


def _proxyless_trunk(width_mult: float) -> _Trunk:
    """ProxylessNAS-Mobile as OFA builds it (``OFAProxylessNASNets``)."""
    base = (32, 16, 24, 40, 80, 96, 192, 320, 1280)
    stem = make_divisible(base[0] * width_mult, 8)
    return _Trunk(
        stem=stem,
        first=BlockPlan(in_ch=stem, out_ch=make_divisible(base[1] * width_mult, 8), kernel=3,
                        stride=1, act="relu6", se=False, shortcut=False),
        stage_widths=tuple(make_divisible(b * width_mult, 8) for b in base[2:-1]),
        strides=(2, 2, 2, 1, 2, 1), acts=("relu6",) * 6, ses=(False,) * 6,
        slots=(4, 4, 4, 4, 4, 1), final_expand=None,
        mix=make_divisible(base[-1] * width_mult, 8) if width_mult > 1.0 else base[-1],
        stem_act="relu6", mix_act="relu6", mix_bn=True, eps=1e-3)


#: MBConv families by name (``resnet`` has its own plan type, see :func:`network_plan`)
_TRUNKS = {"mbv3": _mbv3_trunk, "proxyless": _proxyless_trunk}


def network_plan(family: str, width_mult: float = 1.0, n_classes: int = 1000,
                 small_input: bool = False, n_slots: tuple[int, ...] | None = None) -> NetworkPlan:
    """The network of ``family`` at ``width_mult``; ``n_slots`` (blocks per stage) defaults to
    the family's maximum depth everywhere. ``resnet`` returns a
    :class:`~search_spaces.resnet_plan.ResNetPlan` (its own layout, fixed slots)."""
    if family == "resnet":
        from search_spaces.resnet_plan import resnet_plan

        return resnet_plan(width_mult, n_classes, small_input)  # type: ignore[return-value]
    if family not in _TRUNKS:
        raise ValueError(f"unknown supernet family {family!r}; known: {', '.join(FAMILIES)}")
    t = _TRUNKS[family](width_mult)
    slots = n_slots or t.slots
    if len(slots) != len(t.stage_widths):
        raise ValueError(f"{family}: {len(slots)} stage depths for {len(t.stage_widths)} stages")
    strides = (1, *t.strides[1:]) if small_input else t.strides
    stages = tuple(StagePlan(width=w, stride=s, act=a, se=se, n_slots=n)
                   for w, s, a, se, n in zip(t.stage_widths, strides, t.acts, t.ses, slots))
    return NetworkPlan(family=family, width_mult=width_mult, n_classes=n_classes,
                       small_input=small_input, stem_ch=t.stem,
                       stem_stride=1 if small_input else 2, stem_act=t.stem_act,
                       first_block=t.first, stages=stages, final_expand_ch=t.final_expand,
                       feature_mix_ch=t.mix, feature_mix_bn=t.mix_bn, feature_mix_act=t.mix_act,
                       bn_eps=t.eps)


@dataclass(frozen=True)
class LayerShape:
    """One layer of a concrete subnet with its feature-map shapes.

    ``kind`` is one of ``stem``, ``block`` (an inverted-residual block; ``mid_ch`` is 0 for the
    first block, which has no expansion), ``final_expand``, ``pool``, ``feature_mix``,
    ``classifier``. ``in_hw``/``out_hw`` are spatial sizes (square maps).
    """

    kind: str
    in_hw: int
    out_hw: int
    in_ch: int
    out_ch: int
    kernel: int = 1
    stride: int = 1
    mid_ch: int = 0
    se: bool = False
    se_ch: int = 0
    act: str = ""
    shortcut: bool = False
    bn: bool = True
    stage: int = -1  # elastic stage index, -1 outside the stages


def layer_shapes(plan: NetworkPlan, arch: ArchConfig) -> list[LayerShape]:
    """Walk the subnet ``arch`` of ``plan`` layer by layer at resolution ``arch.r``."""
    if plan.family == "resnet":
        from search_spaces.resnet_plan import resnet_layer_shapes

        return resnet_layer_shapes(plan, arch)  # type: ignore[arg-type]
    if len(arch.ks) != len(plan.stages):
        raise ValueError(f"arch has {len(arch.ks)} stages, {plan.family} has {len(plan.stages)}")
    layers: list[LayerShape] = []
    hw = arch.r
    out = conv_out(hw, plan.stem_stride)
    layers.append(LayerShape("stem", hw, out, 3, plan.stem_ch, kernel=3, stride=plan.stem_stride,
                             act=plan.stem_act))
    hw = out
    fb = plan.first_block
    layers.append(LayerShape("block", hw, hw, fb.in_ch, fb.out_ch, kernel=fb.kernel, stride=1,
                             act=fb.act, shortcut=fb.shortcut))
    c = fb.out_ch
    for si, (st, ks, es) in enumerate(zip(plan.stages, arch.ks, arch.e)):
        for bi, (k, e) in enumerate(zip(ks, es)):
            stride = st.stride if bi == 0 else 1
            out = conv_out(hw, stride)
            mid = middle_channels(c, e)
            layers.append(LayerShape(
                "block", hw, out, c, st.width, kernel=k, stride=stride, mid_ch=mid, se=st.se,
                se_ch=se_channels(mid) if st.se else 0, act=st.act,
                shortcut=stride == 1 and c == st.width, stage=si))
            hw, c = out, st.width
    if plan.final_expand_ch is not None:
        layers.append(LayerShape("final_expand", hw, hw, c, plan.final_expand_ch, act="h_swish"))
        c = plan.final_expand_ch
        layers.append(LayerShape("pool", hw, 1, c, c, bn=False))
        layers.append(LayerShape("feature_mix", 1, 1, c, plan.feature_mix_ch, bn=False,
                                 act=plan.feature_mix_act))
    else:
        layers.append(LayerShape("feature_mix", hw, hw, c, plan.feature_mix_ch,
                                 act=plan.feature_mix_act))
        mix = plan.feature_mix_ch
        layers.append(LayerShape("pool", hw, 1, mix, mix, bn=False))
    layers.append(LayerShape("classifier", 1, 1, plan.feature_mix_ch, plan.n_classes, bn=False))
    return layers
