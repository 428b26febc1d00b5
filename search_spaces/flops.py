"""MACs and parameters of a subnet, analytically from its layer shapes (no forward pass).

Counted as OFA counts them: multiply-accumulates of convolutions and linear layers (squeeze-
excite included, as linear layers on the pooled vector); BN, activations and pooling cost no
MACs (OFA's ``flops_counter`` hooks only convolutions and linear layers), for ResNet50D as for
MobileNetV3: its max pooling and the ResNet-D downsample's average pooling count nothing.
Parameters include BN affine weights and biases (not running statistics) and the classifier
bias, so the largest subnet of a supernet without transformation matrices has the supernet's
parameter count. OFA's counter adds its per-layer counts in float32 tensors, so for large
networks it drifts from the exact sum by a few thousand MACs (ResNet50D at 224 px: 7,491,642,368
against the exact 7,491,643,904); ours is the exact integer sum.
"""

from __future__ import annotations

from search_spaces.arch import ArchConfig
from search_spaces.blueprint import LayerShape, NetworkPlan, layer_shapes
from search_spaces.resnet_arch import ResNetArch
from search_spaces.resnet_plan import ResNetPlan

__all__ = ["layer_macs_params", "count_macs_params"]


def layer_macs_params(layer: LayerShape) -> tuple[int, int]:
    """MACs and parameters of one layer."""
    out_px = layer.out_hw * layer.out_hw
    if layer.kind == "stem":
        w = layer.kernel * layer.kernel * layer.in_ch * layer.out_ch
        return w * out_px, w + 2 * layer.out_ch
    if layer.kind == "block":
        macs = params = 0
        mid = layer.in_ch
        if layer.mid_ch:  # expansion 1x1 at the input resolution
            mid = layer.mid_ch
            w = layer.in_ch * mid
            macs += w * layer.in_hw * layer.in_hw
            params += w + 2 * mid
        w = layer.kernel * layer.kernel * mid  # depthwise
        macs += w * out_px
        params += w + 2 * mid
        if layer.se:
            macs += 2 * mid * layer.se_ch
            params += 2 * mid * layer.se_ch + layer.se_ch + mid
        w = mid * layer.out_ch  # projection
        macs += w * out_px
        params += w + 2 * layer.out_ch
        return macs, params
    if layer.kind in ("final_expand", "feature_mix"):
        w = layer.in_ch * layer.out_ch
        return w * out_px, w + (2 * layer.out_ch if layer.bn else 0)
    if layer.kind == "bottleneck":  # ResNet: 1x1, 3x3 (strided), 1x1, and the downsample
        mid = layer.mid_ch
        w1, w2, w3 = layer.in_ch * mid, layer.kernel * layer.kernel * mid * mid, mid * layer.out_ch
        macs = w1 * layer.in_hw * layer.in_hw + (w2 + w3) * out_px
        params = w1 + w2 + w3 + 2 * (2 * mid + layer.out_ch)
        if not layer.shortcut:  # average pooling (no MACs), then 1x1 conv + BN
            w = layer.in_ch * layer.out_ch
            macs += w * out_px
            params += w + 2 * layer.out_ch
        return macs, params
    if layer.kind == "classifier":
        w = layer.in_ch * layer.out_ch
        return w, w + layer.out_ch
    return 0, 0  # pooling


def count_macs_params(plan: NetworkPlan | ResNetPlan,
                      arch: ArchConfig | ResNetArch) -> tuple[int, int]:
    """Total (MACs, parameters) of ``arch`` at resolution ``arch.r``."""
    macs = params = 0
    for layer in layer_shapes(plan, arch):  # dispatches on the plan's family
        m, p = layer_macs_params(layer)
        macs += m
        params += p
    return macs, params
