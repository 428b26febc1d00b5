"""``ofa-platform cost``: dollars, energy and CO2 of some device-hours on a hardware type."""

from __future__ import annotations

import argparse
import json

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost", help="price device-hours: dollars, kWh, CO2 (CompOFA's table)")
    p.add_argument("--device-hours", type=float, required=True,
                   help="GPU-hours (wall time x GPUs) or CPU worker-hours")
    p.add_argument("--hardware", default="v100",
                   help="an entry of the hardware table (default v100); see --list")
    p.add_argument("--table", default=None, help="a hardware YAML table instead of the default")
    p.add_argument("--price", type=float, default=None, help="override dollars per device-hour")
    p.add_argument("--watts", type=float, default=None, help="override watts per device")
    p.add_argument("--pue", type=float, default=None, help="override the PUE")
    p.add_argument("--co2-lbs-per-kwh", type=float, default=None,
                   help="override the carbon intensity")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ofa_platform.costs import compute_cost, load_hardware

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
