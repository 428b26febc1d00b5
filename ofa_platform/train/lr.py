"""Learning-rate math: linear batch scaling, and linear warm-up then cosine, per iteration.

Pure functions of integers and floats so they are tested directly and every DDP worker
computes the same value. Conventions follow OFA's code: a segment of ``total_steps``
iterations starts with ``warmup_steps`` of linear warm-up from 0 and then decays with a
half cosine over the remaining iterations, reaching 0 only after the last step.
"""

from __future__ import annotations

import math

from ofa_platform.train.schedule import Schedule

__all__ = ["scale_lr", "lr_at", "schedule_lr"]


def scale_lr(lr: float, total_batch: int, reference_batch: int = 2048) -> float:
    """The linear scaling rule: ``lr`` is stated per ``reference_batch`` images of *total*
    (all-worker) batch, so a smaller real batch takes a proportionally smaller LR."""
    if total_batch <= 0 or reference_batch <= 0:
        raise ValueError(f"batch sizes must be positive, got {total_batch}, {reference_batch}")
    return lr * total_batch / reference_batch


def lr_at(step: int, *, base_lr: float, total_steps: int, warmup_steps: int = 0) -> float:
    """LR at iteration ``step`` (0-based) of a segment of ``total_steps`` iterations.

    Warm-up: ``base_lr * (step + 1) / warmup_steps`` for ``step < warmup_steps`` (the first
    step already moves). Cosine: with ``c = step - warmup_steps`` and ``C = total_steps -
    warmup_steps``, ``0.5 * base_lr * (1 + cos(pi * c / C))``. Steps past the end clamp to
    the last step's value.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if not 0 <= warmup_steps < total_steps:
        warmup_steps = max(0, min(warmup_steps, total_steps - 1))
    step = max(0, min(step, total_steps - 1))
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    c, span = step - warmup_steps, total_steps - warmup_steps
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * c / span))


def schedule_lr(schedule: Schedule, global_step: int, steps_per_epoch: int,
                total_batch: int) -> float:
    """The LR a schedule prescribes at ``global_step`` (iterations since the schedule began).

    ``per_phase``: each phase is its own warm-up + cosine segment with its own (scaled) LR,
    so the LR restarts at each phase boundary (OFA, CompOFA). ``global_cosine``: one segment
    over all epochs with the first phase's LR and warm-up (DεpS, BigNAS).
    """
    if steps_per_epoch <= 0:
        raise ValueError(f"steps_per_epoch must be positive, got {steps_per_epoch}")
    ref = schedule.lr_reference_batch
    if schedule.lr_schedule == "global_cosine":
        first = schedule.phases[0]
        return lr_at(global_step, base_lr=scale_lr(first.lr, total_batch, ref),
                     total_steps=schedule.total_epochs * steps_per_epoch,
                     warmup_steps=first.warmup_epochs * steps_per_epoch)
    epoch = min(max(global_step, 0) // steps_per_epoch, schedule.total_epochs - 1)
    phase = schedule.phase_at(epoch)
    return lr_at(global_step - phase.start_epoch * steps_per_epoch,
                 base_lr=scale_lr(phase.lr, total_batch, ref),
                 total_steps=phase.total_epochs * steps_per_epoch,
                 warmup_steps=phase.warmup_epochs * steps_per_epoch)
