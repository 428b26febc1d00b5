"""``ofa-platform search``: the most accurate subnets under many efficiency targets at once."""

from __future__ import annotations

import argparse
import json

from ofa_platform.checks import (
    non_empty_text,
    non_negative_float,
    positive_float,
    positive_int,
    seed_int,
)
from ofa_platform.cli._requests import defaults, request_from_args

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    """The ``search`` options, defaults read from the request dataclass. Long on purpose: one
    ``add_argument`` per flag, in the order ``--help`` shows them, reads as the command's
    manual; split up, a flag's help would be hunted across functions."""
    from ofa_platform.search.request import EXPORT_FORMATS, LATENCY_CHOICES, SearchRequest
    from ofa_platform.search.strategies import PAPER_FOLLOWUP_GENERATIONS, STRATEGIES

    d = defaults(SearchRequest)
    p = sub.add_parser("search", help="evolutionary search of a supernet for many targets")
    p.add_argument("--space", required=True, help="search space name (ofa-platform spaces)")
    p.add_argument("--width-mult", type=positive_float,
                   help="supernet width multiplier (default: the checkpoint's, else 1.0)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="trained supernet: subnets are evaluated on --data")
    src.add_argument("--predictor", help="accuracy predictor (OFA's published file or ours)")
    p.add_argument("--latency", required=True,
                   help=f"{LATENCY_CHOICES} (lut: OFA's lookup tables)")
    p.add_argument("--targets", required=True, help="comma-separated targets, e.g. 15,20,25")
    p.add_argument("--resolutions", help="e.g. 160-224:4 (default: the space's)")
    p.add_argument("--strategy", default=d["strategy"], choices=list(STRATEGIES),
                   help="vanilla: one full search per target; top-down / bottom-up: the "
                        "multi-target paper's; top-down+ / bottom-up+: our enhanced versions; "
                        "exhaustive: small spaces only")
    p.add_argument("--workers", type=positive_int, default=d["workers"], help="Ray workers")
    p.add_argument("--export", metavar="DIR", help="export every chosen subnet here")
    p.add_argument("--format", dest="export_format", choices=EXPORT_FORMATS,
                   default=d["export_format"],
                   help="--export files: torch.export (default), TorchScript or ONNX")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--seed", type=seed_int, default=d["seed"])
    p.add_argument("--generations", type=positive_int,
                   help="generations per target (default: the space's; OFA: 500, CompOFA "
                        "Appendix A.4: 50 fixed kernel, 300 elastic kernel)")
    p.add_argument("--followup-generations", type=positive_int,
                   help="top-down / bottom-up: generations of every target after the first "
                        f"(default: the paper's {PAPER_FOLLOWUP_GENERATIONS}, at most "
                        "--generations)")
    p.add_argument("--population-size", type=positive_int, default=d["population_size"],
                   help="OFA: 100")
    p.add_argument("--data", help="data spec for --checkpoint (e.g. cifar10, parquet:DIR)")
    p.add_argument("--experiment", type=non_empty_text, default=d["experiment"],
                   help="MLflow experiment")
    p.add_argument("--out", dest="out_dir", default=d["out_dir"],
                   help="directory for pareto.parquet")
    p.add_argument("--cache-dir", default=d["cache_dir"],
                   help="persistent latency and accuracy memos")
    p.add_argument("--batch-size", type=positive_int,
                   help="measured latency batch (1 CPU, 64 CUDA)")
    p.add_argument("--hardware", default=d["hardware"], help="cost-model hardware of this search")
    p.add_argument("--arch-samples", dest="n_arch_samples", type=positive_int,
                   default=d["n_arch_samples"],
                   help="--checkpoint: subnets evaluated to train the predictor (OFA: 1000)")
    p.add_argument("--calib-images", type=positive_int, default=d["calib_images"],
                   help="BN recalibration images")
    p.add_argument("--val-subset", type=positive_int, help="--checkpoint: validation images used")
    p.add_argument("--subset", type=positive_int,
                   help="--checkpoint: the training rows it was trained on (train --subset), "
                        "so the validation split is held out of them as in training")
    p.add_argument("--gpus-per-worker", type=non_negative_float, default=d["gpus_per_worker"])
    p.add_argument("--method",
                   help="method the run is filed under (default: the checkpoint's training "
                        "schedule, else the space's prefix)")
    p.add_argument("--train-run-id",
                   help="MLflow run of the training searched (default: the checkpoint's)")
    p.add_argument("--no-mlflow", action="store_true", help="do not record an MLflow run")
    p.add_argument("--log-models", action="store_true",
                   help="log every chosen subnet as an MLflow model (BN recalibrated, pt2 "
                        "format, input example and signature; needs --checkpoint)")
    p.set_defaults(func=run)


def preflight(args: argparse.Namespace) -> None:
    """Paths, resources and the tracking store, checked before anything is built or written
    (an --export naming a file used to fail after pareto.parquet was written)."""
    from ofa_platform.checks import check_local_resources, check_tracking_uri
    from ofa_platform.files import check_output_dir
    from ofa_platform.tracking import resolve_tracking_uri

    check_output_dir(args.out_dir, "--out")
    check_output_dir(args.cache_dir, "--cache-dir")
    if args.export is not None:
        check_output_dir(args.export, "--export")
    check_local_resources(args.workers, 1.0, args.gpus_per_worker)
    if not args.no_mlflow:
        check_tracking_uri(resolve_tracking_uri(None))


def run(args: argparse.Namespace) -> int:
    """Check, search (progress on stdout, or stderr with ``--json``), print the outcome."""
    import sys
    from contextlib import nullcontext, redirect_stdout

    from ofa_platform.errors import UserError
    from ofa_platform.progress import console
    from ofa_platform.search.runner import SearchRequest, parse_targets, run_search

    if args.log_models and (not args.checkpoint or args.no_mlflow):
        raise UserError("--log-models needs --checkpoint (trained weights to log) and an "
                        "MLflow run (drop --no-mlflow)")
    preflight(args)
    req = request_from_args(SearchRequest, args, targets=parse_targets(args.targets),
                            log_mlflow=not args.no_mlflow)
    if getattr(args, "verbose", False):  # else the search starts a quiet Ray if it needs one
        from ofa_platform.cluster import init_ray  # only here: most searches need no Ray

        init_ray(verbose=True)
    quiet_stdout = redirect_stdout(sys.stderr) if args.json else nullcontext()
    with console(sys.stderr if args.json else sys.stdout) as progress, quiet_stdout:
        out = run_search(req, progress)  # --json: stdout is the JSON alone
    if args.json:
        print(json.dumps(_clean(_document(args, out))))
    else:
        _print_outcome(args, out)
    return 0


def _document(args: argparse.Namespace, out: object) -> dict[str, object]:
    """The ``--json`` document: the outcome and one entry per target with its arch."""
    return {"space": args.space, "strategy": args.strategy, "estimator": out.estimator,
            "unit": out.unit, "search_time_s": out.search_time_s,
            "evaluations": out.evaluations, "run_id": out.run_id,
            "pareto": str(out.pareto_path), "exported": [str(p) for p in out.exported],
            "predictor_metrics": out.predictor_metrics,
            "latency_noisy_layers": out.noisy_latencies,
            "results": [{**row, "arch": json.loads(row["arch_json"]) if row["arch_json"]
                         else None} for row in out.rows]}


def _print_outcome(args: argparse.Namespace, out: object) -> None:
    """The table of chosen subnets, the predictor's held-out quality, and a summary line."""
    from ofa_platform.search.pareto import format_table

    print(format_table(out.rows, out.unit))
    if out.predictor_metrics:
        m = out.predictor_metrics
        print(f"predictor trained on {m['n_train']:.0f} subnets: held-out RMSE "
              f"{100 * m['rmse']:.2f} points, Kendall tau {m['kendall_tau']:.3f} "
              f"({m['n_val']:.0f} subnets)")
    if out.noisy_latencies:
        print(f"warning: {out.noisy_latencies} measured layer latencies stayed noisy (the "
              f"machine was busy); costs may be off")
    print(f"{args.strategy}: {len(out.rows)} targets in {out.search_time_s:.2f} s, "
          f"{out.evaluations} evaluations; table {out.pareto_path}"
          + (f"; MLflow run {out.run_id}" if out.run_id else ""))


def _clean(value: object) -> object:
    """JSON has no NaN: an unmeasured accuracy is null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
