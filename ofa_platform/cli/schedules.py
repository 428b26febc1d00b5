"""``ofa-platform schedules``: list the training recipes, or show one's phases and epochs.

Showing one recipe validates it against its space first (a restriction that cannot apply is
the same one-line error as at ``train`` time) and prints what each phase actually trains: the
space, per-stage kernels, depths and ratios after the restriction, and the MACs of the phase's
largest and smallest subnet, so a restriction that the space ignores cannot hide.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ofa_platform.train.schedule import Phase, Schedule
    from search_spaces.space import SearchSpace

__all__ = ["register", "run", "phase_runs"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schedules", help="list training schedules or show one's phases")
    p.add_argument("name", nargs="?", help="a schedule name or a path to a YAML recipe")
    p.add_argument("--dir", default=None, help="schedules directory (default: jobs/schedules)")
    p.add_argument("--space", default=None,
                   help="show the phases in this space (default: the schedule's)")
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


def _choices(values: list[tuple[int, ...]]) -> str:
    """Per-stage choices, folded when every stage has the same: ``3,5,7`` or ``3|5|3|3|5``."""
    if len(set(values)) == 1:
        return ",".join(map(str, values[0]))
    return "|".join(",".join(map(str, v)) for v in values)


def phase_runs(schedule: Schedule, space: SearchSpace) -> list[dict[str, Any]]:
    """What each phase of ``schedule`` trains in a run on ``space`` (a ``UserError`` when a
    phase cannot apply): its space, per-stage choices, cardinality, and MACs of the largest and
    smallest subnet at the space's largest resolution (ImageNet's 224 for the shipped spaces).
    """
    from search_spaces.blueprint import network_plan
    from search_spaces.flops import count_macs_params

    out = []
    for phase, ps in zip(schedule.phases, schedule.phase_spaces(space)):
        r = ps.resolutions[-1]
        plan = network_plan(ps.family)
        stages = getattr(ps, "stages", None)  # ResNet50D: one choice list for every stage
        out.append({
            "phase": phase.name, "space": ps.name, "compound": getattr(ps, "compound", False),
            "kernels": ([list(st.kernels) for st in stages] if stages else [[3]]),
            "depths": ([list(st.depths) for st in stages] if stages else [list(ps.depths)]),
            "ratios": ([list(st.ratios) for st in stages] if stages else [list(ps.ratios)]),
            "cardinality": ps.cardinality(), "resolution": r,
            "macs_largest": count_macs_params(plan, ps.largest(r))[0],
            "macs_smallest": count_macs_params(plan, ps.smallest(r))[0]})
    return out


def run(args: argparse.Namespace) -> int:
    """List the recipes, or validate one against its space and show what each phase trains."""
    from ofa_platform.errors import UserError
    from ofa_platform.train.schedule import load_schedule
    from search_spaces.spaces import UnknownSpaceError, get_space

    if not args.name:
        _print_list(args)
        return 0
    s = load_schedule(args.name, args.dir)
    try:
        space = get_space(args.space or s.space)
    except UnknownSpaceError as exc:
        raise UserError(str(exc)) from None
    runs = phase_runs(s, space)  # validates every phase against the space
    if args.json:
        print(json.dumps({**s.to_dict(), "runs": runs}, indent=2))
        return 0
    _print_recipe(s)
    _print_runs(space.name, runs)
    return 0


def _print_list(args: argparse.Namespace) -> None:
    """One row (or JSON object) per recipe in the directory."""
    from ofa_platform.train.schedule import list_schedules, load_schedule

    schedules = [load_schedule(n, args.dir) for n in list_schedules(args.dir)]
    if args.json:
        print(json.dumps([{"name": s.name, "space": s.space, "phases": len(s.phases),
                           "total_epochs": s.total_epochs, "description": s.description}
                          for s in schedules], indent=2))
        return
    print(f"{'schedule':<14} {'space':<16} {'phases':>6} {'epochs':>6}  description")
    for s in schedules:
        print(f"{s.name:<14} {s.space:<16} {len(s.phases):>6} {s.total_epochs:>6}  "
              f"{s.description}")


def _print_recipe(s: Any) -> None:
    """The recipe as written: optimizer, regularisation and one row per phase."""
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


def _print_runs(space: str, runs: list[dict[str, Any]]) -> None:
    """What each phase actually trains in ``space``: its choices, subnets and MACs."""
    print(f"  what runs in {space} (MACs at {runs[0]['resolution']} px):")
    print(f"  {'#':>2} {'phase':<12} {'space':<16} {'kernels':<12} {'depths':<8} {'ratios':<16} "
          f"{'subnets':>12} {'MMACs max':>9} {'MMACs min':>9}")
    for i, r in enumerate(runs):
        ratios = _choices([tuple(x) for x in r["ratios"]]) + (" (coupled)" if r["compound"]
                                                              else "")
        print(f"  {i:>2} {r['phase']:<12} {r['space']:<16} "
              f"{_choices([tuple(x) for x in r['kernels']]):<12} "
              f"{_choices([tuple(x) for x in r['depths']]):<8} {ratios:<16} "
              f"{r['cardinality']:>12.4g} {r['macs_largest'] / 1e6:>9.1f} "
              f"{r['macs_smallest'] / 1e6:>9.1f}")
