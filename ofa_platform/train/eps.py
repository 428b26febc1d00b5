"""DεpS's ε-shrinking: the β weight on the subnets' gradients, per iteration.

Interpretation used here (the paper states the goal, not a formula): β is 0 until the
ε-shrinking phase starts at ``Tw - ramp`` epochs; during the ramp, β(t) is chosen so that
the subnets' *effective* learning rate ``β(t) * lr(t)`` rises linearly per iteration from 0
to ``lr(Tw)``, i.e. it reaches the full model's learning rate exactly at Tw::

    β(t) = clamp(((t - t0) / (tw - t0)) * lr(tw) / lr(t), 0, 1)

with ``t0`` the first iteration of the ramp and ``tw`` Tw's iteration; from Tw on β = 1.
Since the cosine LR decreases, ``lr(tw) / lr(t) <= 1`` and β stays below 1 until Tw. The
full model's own gradient is never scaled. Schedules without a ramp have β = 1 throughout.
"""

from __future__ import annotations

from ofa_platform.train.lr import schedule_lr
from ofa_platform.train.schedule import Schedule

__all__ = ["beta_at", "schedule_beta"]


def beta_at(step: int, *, ramp_start: int, tw: int, lr_now: float, lr_tw: float) -> float:
    """β at iteration ``step`` for a ramp over iterations ``[ramp_start, tw)``.

    0 before ``ramp_start``, 1 from ``tw`` on; in between ``frac * lr_tw / lr_now`` clamped
    to [0, 1], where ``frac = (step - ramp_start) / (tw - ramp_start)``.
    """
    if step < ramp_start:
        return 0.0
    if step >= tw or tw <= ramp_start:
        return 1.0
    if lr_now <= 0:
        return 1.0
    frac = (step - ramp_start) / (tw - ramp_start)
    return min(1.0, max(0.0, frac * lr_tw / lr_now))


def schedule_beta(schedule: Schedule, global_step: int, steps_per_epoch: int,
                  total_batch: int) -> float:
    """β the schedule prescribes at ``global_step``: 0 in phases before the ε-shrinking
    phase (the full model trains alone), the ramp inside it, 1 after Tw and in schedules
    without a ramp. LRs come from :func:`~ofa_platform.train.lr.schedule_lr`."""
    ramp = next((p for p in schedule.phases if p.beta_ramp_epochs), None)
    if ramp is None:
        return 1.0
    t0 = ramp.start_epoch * steps_per_epoch
    tw = (ramp.start_epoch + ramp.beta_ramp_epochs) * steps_per_epoch
    if global_step < t0:
        return 0.0
    if global_step >= tw:
        return 1.0
    return beta_at(global_step, ramp_start=t0, tw=tw,
                   lr_now=schedule_lr(schedule, global_step, steps_per_epoch, total_batch),
                   lr_tw=schedule_lr(schedule, tw, steps_per_epoch, total_batch))
