"""``ofa-platform schedules``: list the training recipes, or show one's phases and epochs."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ofa_platform.train.schedule import Phase

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schedules", help="list training schedules or show one's phases")
    p.add_argument("name", nargs="?", help="a schedule name or a path to a YAML recipe")
    p.add_argument("--dir", default=None, help="schedules directory (default: jobs/schedules)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def _restriction(phase: Phase) -> str:
    r = phase.restrict
    parts = [f"{k} {list(v)}" for k, v in (("k", r.kernels), ("e", r.ratios), ("d", r.depths),
                                           ("w", r.widths)) if v is not None]
    if r.compound:
        parts.append("compound")
    text = " ".join(parts) or "whole space"
    return text + (f", β ramp {phase.beta_ramp_epochs} epochs" if phase.beta_ramp_epochs else "")


def run(args: argparse.Namespace) -> int:
    from ofa_platform.train.schedule import list_schedules, load_schedule

    if not args.name:
        schedules = [load_schedule(n, args.dir) for n in list_schedules(args.dir)]
        if args.json:
            print(json.dumps([{"name": s.name, "space": s.space, "phases": len(s.phases),
                               "total_epochs": s.total_epochs, "description": s.description}
                              for s in schedules], indent=2))
            return 0
        print(f"{'schedule':<14} {'space':<16} {'phases':>6} {'epochs':>6}  description")
        for s in schedules:
            print(f"{s.name:<14} {s.space:<16} {len(s.phases):>6} {s.total_epochs:>6}  "
                  f"{s.description}")
        return 0
    s = load_schedule(args.name, args.dir)
    if args.json:
        print(json.dumps(s.to_dict(), indent=2))
        return 0
    o = s.optimizer
    print(f"{s.name}: {s.description}")
    print(f"  space {s.space}, {s.total_epochs} epochs, LR per {s.lr_reference_batch} images "
          f"({s.lr_schedule.replace('_', ' ')}), SGD momentum {o.momentum}"
          f"{' Nesterov' if o.nesterov else ''}, weight decay {o.weight_decay:g}"
          f"{' (not on BN/bias)' if o.no_decay_bn_bias else ''}, label smoothing "
          f"{s.label_smoothing}, dropout {s.dropout}"
          f"{' (full model only)' if s.dropout_full_model_only else ''}")
    if s.tw_epoch is not None:
        print(f"  ε-shrinking: Tw = {s.tw_epoch}")
    print(f"  {'#':>2} {'phase':<12} {'epochs':>9} {'start':>5} {'end':>5} {'lr':>6} "
          f"{'subnets':>7} {'sampling':<9} {'distill':<8} {'sort':<4} {'init':<8} restriction")
    for i, p in enumerate(s.phases):
        ep = f"{p.epochs}+{p.warmup_epochs}" if p.warmup_epochs else str(p.epochs)
        print(f"  {i:>2} {p.name:<12} {ep:>9} {p.start_epoch:>5} {p.end_epoch:>5} {p.lr:>6g} "
              f"{p.subnets_per_step:>7} {p.sampling:<9} {p.distillation:<8} "
              f"{'yes' if p.sort_channels else 'no':<4} {p.init:<8} {_restriction(p)}")
    return 0
