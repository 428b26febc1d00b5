"""Elastic batch norm over the first channels, and extraction to a plain BatchNorm2d.

In train mode the active slice of the running statistics is updated in place (the slices are
views of the full buffers), as OFA does, so a subnet trained or recalibrated inside the
supernet leaves its statistics where :meth:`DynamicBatchNorm2d.extract` finds them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DynamicBatchNorm2d", "copy_batchnorm"]


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that normalises however many leading channels the input has."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        factor = 0.0
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = (self.momentum if self.momentum is not None
                      else 1.0 / float(self.num_batches_tracked))
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], self.weight[:c],
                            self.bias[:c], self.training, factor, self.eps)

    @torch.no_grad()
    def extract(self, channels: int) -> nn.BatchNorm2d:
        """A static BatchNorm2d holding copies of the first ``channels`` of everything."""
        bn = nn.BatchNorm2d(channels, eps=self.eps, momentum=self.momentum,
                            device=self.weight.device)
        copy_batchnorm(self, bn, channels)
        return bn


@torch.no_grad()
def copy_batchnorm(src: nn.BatchNorm2d, dst: nn.BatchNorm2d, channels: int) -> None:
    """Copy the first ``channels`` of ``src``'s affine and running statistics into ``dst``."""
    dst.weight.copy_(src.weight[:channels])
    dst.bias.copy_(src.bias[:channels])
    dst.running_mean.copy_(src.running_mean[:channels])
    dst.running_var.copy_(src.running_var[:channels])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
