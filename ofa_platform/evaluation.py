"""Evaluating subnets: BN recalibration (OFA's recipe) and top-1 accuracy.

A subnet extracted from a supernet carries running statistics accumulated over many
different subnets, so OFA re-estimates them before measuring accuracy: run ~2000 training
images (batches of 200) through the subnet and set each BN layer's running mean and variance
to the batch-size-weighted mean of the per-batch statistics. The variance is the biased one
(mean squared deviation), as OFA computes it. Everything happens on an extracted copy; the
supernet is never touched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from ofa_platform.errors import UserError
from search_spaces.arch import ArchConfig

if TYPE_CHECKING:
    from search_spaces.supernet import Supernet

__all__ = ["recalibrate_bn", "evaluate_top1"]


class _BatchStats:
    """Accumulates batch-size-weighted sums of one BN layer's per-batch mean and variance.

    The BN layer computes the batch statistics anyway; with momentum 1.0 its running buffers
    hold exactly this batch's mean and unbiased variance after each forward, so the hook reads
    them (turning the variance biased, as OFA does) instead of computing them a second time.
    """

    def __init__(self) -> None:
        self.mean_sum: torch.Tensor | None = None
        self.var_sum: torch.Tensor | None = None
        self.count = 0

    def hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], _: torch.Tensor) -> None:
        x = inputs[0]
        n = x.shape[0]
        per_channel = x.numel() // x.shape[1]
        mean = module.running_mean.float() * n
        var = module.running_var.float() * (n * (per_channel - 1) / max(per_channel, 1))
        if self.mean_sum is None or self.var_sum is None:
            self.mean_sum, self.var_sum = mean, var
        else:
            self.mean_sum += mean
            self.var_sum += var
        self.count += n


@torch.no_grad()
def recalibrate_bn(supernet: Supernet, arch: ArchConfig, images: Iterable[torch.Tensor],
                   device: str | torch.device = "cpu") -> nn.Module:
    """Extract ``arch`` from ``supernet`` and re-estimate its BN statistics on ``images``.

    ``images`` yields input batches (tensors ``N, 3, H, W``; ``(images, labels)`` pairs are
    accepted too). Returns the static subnet in eval mode on ``device``.
    """
    model = supernet.extract(arch).to(device)
    stats: dict[str, _BatchStats] = {}
    momenta: dict[str, float | None] = {}
    handles = []
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            stats[name] = _BatchStats()
            momenta[name] = m.momentum
            m.momentum = 1.0
            handles.append(m.register_forward_hook(stats[name].hook))
    model.train()
    n_batches = 0
    try:
        for batch in images:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(device))
            n_batches += 1
    finally:
        for h in handles:
            h.remove()
    if n_batches == 0:
        raise UserError("BN recalibration needs at least one batch of images; got none")
    bns = dict(model.named_modules())
    for name, s in stats.items():
        bn = bns[name]
        if s.count and s.mean_sum is not None and s.var_sum is not None:
            bn.running_mean.copy_(s.mean_sum / s.count)
            bn.running_var.copy_(s.var_sum / s.count)
        bn.momentum = momenta[name]
    return model.eval()


@torch.no_grad()
def evaluate_top1(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  device: str | torch.device = "cpu") -> float:
    """Fraction in [0, 1] of samples whose arg-max logit equals the label (model in eval)."""
    model.eval().to(device)
    correct = total = 0
    for images, labels in batches:
        logits = model(images.to(device))
        correct += int((logits.argmax(dim=1) == labels.to(device)).sum())
        total += int(labels.shape[0])
    if total == 0:
        raise UserError("top-1 evaluation got no samples")
    return correct / total
