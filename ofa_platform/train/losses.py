"""Training losses: label-smoothed cross-entropy and soft cross-entropy for distillation.

All losses are batch means, so gradients of the subnets of one step can be summed (β-weighted
for DεpS) into one optimizer step regardless of the batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["label_smoothed_ce", "soft_ce", "subnet_loss"]


def label_smoothed_ce(logits: torch.Tensor, targets: torch.Tensor,
                      smoothing: float = 0.1) -> torch.Tensor:
    """Cross-entropy against ``(1 - s) * one_hot + s / n_classes`` (OFA's label smoothing)."""
    return F.cross_entropy(logits.float(), targets, label_smoothing=smoothing)


def soft_ce(logits: torch.Tensor, target_logits: torch.Tensor,
            temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy of ``softmax(logits / T)`` against ``softmax(target_logits / T)``.

    The target is detached: the teacher (frozen or the in-place full model) never receives a
    gradient from a student's loss.
    """
    t = float(temperature)
    target = F.softmax(target_logits.detach().float() / t, dim=1)
    return -(target * F.log_softmax(logits.float() / t, dim=1)).sum(dim=1).mean()


def subnet_loss(mode: str, logits: torch.Tensor, targets: torch.Tensor, *,
                smoothing: float = 0.1, teacher_logits: torch.Tensor | None = None,
                weight: float = 1.0, temperature: float = 1.0,
                is_full_model: bool = False) -> torch.Tensor:
    """One subnet's loss under a phase's distillation ``mode``, as the mode's registry entry
    (``ofa_platform.train.modes``) defines it:

    - ``none``: label-smoothed CE.
    - ``teacher``: label-smoothed CE + ``weight`` x soft CE against the frozen teacher's
      logits (OFA, CompOFA).
    - ``inplace``: the full model (``is_full_model``) learns from label-smoothed CE; other
      subnets only from the full model's detached logits (``teacher_logits``) by soft CE
      (BigNAS, DεpS's IKD).
    """
    from ofa_platform.train.modes import get_distillation

    return get_distillation(mode).loss(logits, targets, smoothing=smoothing,
                                       soft_targets=teacher_logits, weight=weight,
                                       temperature=temperature, is_full_model=is_full_model)
