"""``ofa-platform cost``: dollars, energy and CO2 of some device-hours on a hardware type."""

from __future__ import annotations

import argparse
import json

from ofa_platform.checks import non_negative_float, positive_float

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost", help="price device-hours: dollars, kWh, CO2 (CompOFA's table)")
    p.add_argument("--device-hours", type=non_negative_float, default=None,
                   help="GPU-hours (wall time x GPUs) or CPU worker-hours (required unless --list)")
    p.add_argument("--hardware", default="v100",
                   help="an entry of the hardware table (default v100); see --list")
    p.add_argument("--table", default=None, help="a hardware YAML table instead of the default")
    p.add_argument("--price", type=non_negative_float, default=None,
                   help="override dollars per device-hour")
    p.add_argument("--watts", type=non_negative_float, default=None,
                   help="override watts per device")
    p.add_argument("--pue", type=positive_float, default=None, help="override the PUE")
    p.add_argument("--co2-lbs-per-kwh", type=non_negative_float, default=None,
                   help="override the carbon intensity")
    p.add_argument("--list", action="store_true", help="print the hardware table and exit")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ofa_platform.costs import compute_cost, load_hardware, load_hardware_table
    from ofa_platform.errors import UserError

    if args.list:
        table = load_hardware_table(args.table)
        if args.json:
            print(json.dumps([asdict(h) for h in table.values()], indent=2))
            return 0
        print(f"{'hardware':<10} {'kind':<4} {'$/hour':>7} {'watts':>7} {'PUE':>5} "
              f"{'lbs/kWh':>7}  description")
        for h in table.values():
            print(f"{h.name:<10} {h.kind:<4} {h.price_per_hour:>7.3f} {h.watts:>7.2f} "
                  f"{h.pue:>5.2f} {h.co2_lbs_per_kwh:>7.3f}  {h.description}")
        return 0
    if args.device_hours is None:
        raise UserError("--device-hours is required (or --list)")
    overrides = {k: v for k, v in (("price_per_hour", args.price), ("watts", args.watts),
                                   ("pue", args.pue), ("co2_lbs_per_kwh", args.co2_lbs_per_kwh))
                 if v is not None}
    hw = load_hardware(args.hardware, args.table, overrides=overrides)
    report = compute_cost(args.device_hours, hw)
    if args.json:
        print(json.dumps({"hardware": hw.name, "kind": hw.kind, **report.to_dict()}, indent=2))
    else:
        print(report.line(hw.name))
    return 0
