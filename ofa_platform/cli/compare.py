"""``ofa-platform compare --experiment NAME [--out report.html] [--json]``.

Prints the per-method comparison table (cost, accuracy, search time, ratios to OFA), writes the
self-contained HTML report and logs it to MLflow as an artifact of a comparison run.
"""

from __future__ import annotations

import argparse
import json

from ofa_platform.checks import non_empty_text

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="compare training methods from MLflow: table and "
                              "HTML report", description=__doc__.splitlines()[0])
    p.add_argument("--experiment", type=non_empty_text, required=True,
                   help="MLflow experiment name")
    p.add_argument("--out", default="report.html", help="HTML report path (default report.html)")
    p.add_argument("--json", action="store_true", help="print the table as JSON instead")
    p.add_argument("--no-log", action="store_true",
                   help="do not log the report to MLflow as a comparison run")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow URI (default: MLFLOW_TRACKING_URI, else the project's SQLite)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    # MLflow logs store migrations at INFO on stderr; the command's output is the table.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    from dashboards.compare import format_table, resolve_uri
    from dashboards.report import table_records, write_report
    from ofa_platform.checks import check_tracking_uri
    from ofa_platform.files import check_output_file

    check_output_file(args.out, "--out")
    check_tracking_uri(resolve_uri(args.tracking_uri))

    result = write_report(args.experiment, args.out, tracking_uri=args.tracking_uri,
                          log_to_mlflow=not args.no_log)
    if args.json:
        print(json.dumps({"report": str(result.path.resolve()), "mlflow_run_id": result.run_id,
                          "methods": table_records(result.table)}, indent=2))
        return 0
    print(format_table(result.table))
    print(f"\nreport: {result.path.resolve()}")
    if result.run_id:
        print(f"logged to MLflow run {result.run_id} (artifact report.html)")
        from dashboards.compare import resolve_uri
        from ofa_platform.tracking import experiment_url

        uri = resolve_uri(args.tracking_uri)
        if uri.startswith(("http://", "https://")):
            import mlflow

            exp = mlflow.MlflowClient(uri).get_experiment_by_name(args.experiment)
            print(f"runs: {experiment_url(uri, exp.experiment_id)}")
    return 0
