"""Elastic ops, one file each with its static twin beside it (timm ``layers/`` style)."""

from search_spaces.ops.activations import ACTIVATIONS, activation_fn, make_activation
from search_spaces.ops.batchnorm import DynamicBatchNorm2d, copy_batchnorm
from search_spaces.ops.conv_bn_act import ConvBNAct, GlobalAvgPool
from search_spaces.ops.depthwise import DynamicDepthwiseConv2d, depthwise_conv2d, matrix_name
from search_spaces.ops.linear import DynamicLinear, linear
from search_spaces.ops.mbconv import DynamicMBConv, MBConv
from search_spaces.ops.pointwise import (
    DynamicPointwiseConv2d,
    conv2d_uninitialised,
    pointwise_conv2d,
)
from search_spaces.ops.se import DynamicSE, SqueezeExcite

__all__ = [
    "ACTIVATIONS", "activation_fn", "make_activation", "DynamicBatchNorm2d", "copy_batchnorm",
    "ConvBNAct", "GlobalAvgPool", "DynamicDepthwiseConv2d", "depthwise_conv2d", "matrix_name",
    "conv2d_uninitialised",
    "DynamicLinear", "linear", "DynamicMBConv", "MBConv", "DynamicPointwiseConv2d",
    "pointwise_conv2d", "DynamicSE", "SqueezeExcite",
]
