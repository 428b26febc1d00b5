"""Test helpers shared by the supernet and checkpoint tests (not collected by pytest)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["randomize"]


@torch.no_grad()
def randomize(net: nn.Module, seed: int) -> nn.Module:
    """Perturb what init leaves trivial (identity matrices, unit BN, zero biases, BN buffers)
    so a wrong slice, transpose, permutation or mis-mapped checkpoint key changes outputs."""
    g = torch.Generator().manual_seed(seed)
    for name, p in net.named_parameters():
        if "matrix" in name:
            p.add_(0.1 * torch.randn(p.shape, generator=g))
        elif name.endswith("bias"):
            p.normal_(0.0, 0.1, generator=g)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0.0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
            m.weight.uniform_(0.5, 1.5, generator=g)
            m.bias.normal_(0.0, 0.1, generator=g)
            m.num_batches_tracked.fill_(int(torch.randint(1, 100, (1,), generator=g)))
    return net
