"""``ofa-platform spaces``: list the registered search spaces and their exact sizes."""

from __future__ import annotations

import argparse
import json

from search_spaces.spaces import SPACES, get_space

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spaces", help="list search spaces and their cardinalities")
    p.add_argument("name", nargs="?", help="show one space in full")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spaces = [get_space(args.name)] if args.name else [SPACES[n] for n in sorted(SPACES)]
    if args.json:
        print(json.dumps([s.describe() for s in spaces], indent=2))
        return 0
    print(f"{'space':<20} {'family':<10} {'subnets':>28} {'with resolution':>30}  description")
    for s in spaces:
        print(f"{s.name:<20} {s.family:<10} {s.cardinality():>28,} "
              f"{s.cardinality(True):>30,}  {s.description}")
    if args.name:
        s = spaces[0]
        if hasattr(s, "describe_lines"):  # ResNet50D: stem, stages with widths
            print("\n".join(s.describe_lines()))
        for i, st in enumerate(getattr(s, "stages", ())):
            print(f"  stage {i}: depth {list(st.depths)} kernel {list(st.kernels)} "
                  f"ratio {list(st.ratios)}")
        res = s.resolutions
        print(f"  resolutions: {res[0]}..{res[-1]} ({len(res)} sizes)")
    return 0
