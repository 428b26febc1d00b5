"""``ofa-platform quickstart``: train OFA, CompOFA and DεpS at toy scale, search each, report."""

from __future__ import annotations

import argparse

from ofa_platform.checks import non_empty_text, positive_int, seed_int

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="the whole mission at toy scale on this machine")
    p.add_argument("--experiment", type=non_empty_text, default="quickstart",
                   help="MLflow experiment")
    p.add_argument("--out-dir", default="runs/quickstart", help="checkpoints, tables, report")
    p.add_argument("--methods", default="ofa,compofa,deps", help="recipes to compare")
    p.add_argument("--workers", type=positive_int, default=2, help="Ray Train workers")
    p.add_argument("--seed", type=seed_int, default=0)
    p.set_defaults(func=run)


def _preflight(args: argparse.Namespace, methods: tuple[str, ...]) -> None:
    """Every input checked before the first method trains: a typo in the last method used
    to surface after the others had trained."""
    from ofa_platform.checks import check_local_resources, check_tracking_uri
    from ofa_platform.errors import UserError
    from ofa_platform.files import check_output_dir
    from ofa_platform.tracking import resolve_tracking_uri
    from ofa_platform.train.schedule import load_schedule

    for method in methods:  # unknown names and broken recipes: UserError naming them
        load_schedule(method)
    if len(set(methods)) != len(methods):
        raise UserError(f"--methods: {args.methods!r} names a recipe twice")
    check_output_dir(args.out_dir, "--out-dir")
    check_local_resources(args.workers)
    check_tracking_uri(resolve_tracking_uri(None))


def run(args: argparse.Namespace) -> int:
    from ofa_platform.errors import UserError
    from ofa_platform.quickstart import QuickstartConfig, run_quickstart, summary_lines

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if not methods:
        raise UserError("--methods: name at least one recipe")
    if args.workers < 1:
        raise UserError("--workers must be at least 1")
    _preflight(args, methods)
    cfg = QuickstartConfig(methods=methods, experiment=args.experiment, out_dir=args.out_dir,
                           workers=args.workers, seed=args.seed)
    result = run_quickstart(cfg, progress=lambda line: print(line, flush=True))
    for line in summary_lines(result):
        print(line)
    return 0
