"""Ray Job entrypoint: ``ofa-platform submit search jobs/search_note10.yaml``, or plain
``ray job submit --working-dir . -- python jobs/search.py jobs/search_note10.yaml``.

The YAML holds the fields of ``ofa-platform search`` (underscored names, ``targets`` as a list
or a comma string); it becomes a typed ``SearchRequest`` and runs the same library code as the
CLI. Inside Ray's copy of the working directory the job runs in the project checkout when this
machine has one, and refuses an MLflow store inside the copy (:mod:`ofa_platform.jobenv`).
Bad configs exit 2 with one line naming the user's file; a cluster fault exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from ofa_platform.errors import ClusterError, UserError
from ofa_platform.jobconfig import load_job_config
from ofa_platform.jobenv import as_user_names, check_not_in_package, enter_job
from ofa_platform.search.runner import SearchRequest, parse_targets, run_search

__all__ = ["load_request", "main"]


def load_request(path: str | Path) -> SearchRequest:
    """Parse a job YAML into a ``SearchRequest``; unknown keys and wrong types are errors."""
    return load_job_config(
        path, SearchRequest, required=("space", "targets", "latency"),
        converters={"targets": lambda v: parse_targets(v if isinstance(v, str)
                                                        else [str(x) for x in v])})


def main(argv: list[str] | None = None, names: Mapping[str, str] | None = None) -> int:
    """Run the job; ``names`` maps config paths to the names the user knows them by."""
    from ofa_platform.tracking import resolve_tracking_uri

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="search job YAML")
    args = parser.parse_args(argv)
    names = dict(names or {})
    try:
        place = enter_job(args.config)
        names.setdefault(str(place.config), args.config)
        request = load_request(place.config)
        request = replace(request, tracking_uri=request.tracking_uri or place.tracking_uri)
        if request.log_mlflow:
            check_not_in_package(resolve_tracking_uri(request.tracking_uri))
        out = run_search(request)
    except UserError as exc:
        print(f"search job: error: {as_user_names(str(exc), names)}", file=sys.stderr)
        return 2
    except ClusterError as exc:
        print(f"search job: cluster error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"run_id": out.run_id, "pareto": str(out.pareto_path),
                      "search_time_s": out.search_time_s,
                      "results": [{"target": r.target, "feasible": r.feasible,
                                   "cost": r.cost if r.feasible else None,
                                   "accuracy": r.accuracy if r.feasible else None}
                                  for r in out.results]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
