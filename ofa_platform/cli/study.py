"""``ofa-platform study run|status|report STUDY [--scale NAME]``: the recipes side by side.

``run`` works through the study's units (train each recipe, search it, score its subnets on the
test split; train the from-scratch peers), skipping what MLflow says is finished and resuming
an interrupted training run from its checkpoint: run it again to continue. ``status`` lists
the units and what MLflow holds of each. ``report`` writes the report from MLflow alone (HTML,
figures and ``study_results.json``), logged to the study's experiment.
STUDY is a name in ``jobs/studies/`` or a YAML path.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ofa_platform.checks import non_empty_text

if TYPE_CHECKING:
    from ofa_platform.study.protocol import StudyProtocol

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("study", help="run a study of recipes side by side (resumable), "
                              "its status, its report", description=__doc__.splitlines()[0])
    p.add_argument("action", choices=("run", "status", "report"))
    p.add_argument("study", type=non_empty_text, help="jobs/studies/NAME.yaml or a YAML path")
    p.add_argument("--scale", default=None,
                   help="a scale of the protocol (its `scales:`), e.g. paper; default as written")
    p.add_argument("--out", default=None,
                   help="run: working directory (default runs/<experiment>); report: where the "
                        "HTML, figures and JSON go (default runs/<experiment>/report)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow URI (default: MLFLOW_TRACKING_URI, else the project's SQLite)")
    p.add_argument("--no-log", action="store_true", help="report: do not log it to MLflow")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from ofa_platform.checks import check_tracking_uri
    from ofa_platform.files import check_output_dir
    from ofa_platform.study.protocol import load_study
    from ofa_platform.tracking import resolve_tracking_uri

    protocol = load_study(args.study, args.scale)  # bad protocol: one line, exit 2
    uri = resolve_tracking_uri(args.tracking_uri)
    if args.out:
        check_output_dir(args.out, "--out")
    check_tracking_uri(uri)
    if args.action == "status":
        return _status(protocol, uri, args.json)
    if args.action == "report":
        return _report(protocol, uri, args)
    from contextlib import nullcontext, redirect_stdout

    from ofa_platform.checks import check_local_resources
    from ofa_platform.cluster import init_ray
    from ofa_platform.progress import console
    from ofa_platform.study.runner import check_study, run_study, study_budget_line

    check_local_resources(protocol.workers, protocol.cpus_per_worker, protocol.gpus_per_worker)
    check_study(protocol)
    init_ray(verbose=getattr(args, "verbose", False))
    quiet_stdout = redirect_stdout(sys.stderr) if args.json else nullcontext()
    with console(sys.stderr if args.json else sys.stdout) as progress, quiet_stdout:
        progress(f"[study] {study_budget_line(protocol)}")
        outcome = run_study(protocol, tracking_uri=uri, out_dir=args.out, progress=progress)
    if args.json:
        print(json.dumps(outcome.to_json(), indent=2))
    else:
        for u in outcome.units:
            extra = f" ({u.seconds / 60:.1f} min)" if u.seconds else ""
            error = f"  {u.error}" if u.error else ""
            print(f"{u.key:32s} {u.outcome:8s} {u.run_id}{extra}{error}")
        left = "complete" if outcome.complete else "not complete: run it again to continue"
        print(f"study {protocol.name}: {left}; report: ofa-platform study report {args.study}"
              + (f" --scale {protocol.scale}" if protocol.scale != "default" else ""))
    return 0 if outcome.complete else 1


def _status(protocol: StudyProtocol, uri: str, as_json: bool) -> int:
    from ofa_platform.study.runner import study_budget_line, unit_status

    status = unit_status(protocol, uri)
    if as_json:
        print(json.dumps({k: {"state": s, "run_id": r} for k, (s, r) in status.items()},
                         indent=2))
        return 0
    print(study_budget_line(protocol))
    for key, (state, run_id) in status.items():
        print(f"{key:32s} {state:12s} {run_id}")
    return 0


def _report(protocol: StudyProtocol, uri: str, args: argparse.Namespace) -> int:
    from pathlib import Path

    from dashboards.study import write_study_report

    name = protocol.experiment_name
    out = Path(args.out or Path("runs") / name / "report")
    report = write_study_report(name, out, uri, log_to_mlflow=not args.no_log,
                                notes=protocol.notes, study=protocol.name, scale=protocol.scale,
                                protocol=protocol.digest)
    if args.json:
        print(json.dumps(report.results, indent=2))
    else:
        print(f"report: {(out / 'report.html').resolve()}")
        print(f"results: {(out / 'study_results.json').resolve()}")
    return 0
