"""Ray Job entrypoint: ``ray job submit --working-dir . -- python jobs/search.py
jobs/search_note10.yaml``.

The YAML holds the fields of ``ofa-platform search`` (underscored names, ``targets`` as a list
or a comma string); it becomes a typed ``SearchRequest`` and runs the same library code as the
CLI. Bad configs exit 2 with one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ofa_platform.errors import UserError
from ofa_platform.jobconfig import load_job_config
from ofa_platform.search.runner import SearchRequest, parse_targets, run_search

__all__ = ["load_request", "main"]


def load_request(path: str | Path) -> SearchRequest:
    """Parse a job YAML into a ``SearchRequest``; unknown keys and wrong types are errors."""
    return load_job_config(
        path, SearchRequest, required=("space", "targets", "latency"),
        converters={"targets": lambda v: parse_targets(v if isinstance(v, str)
                                                        else [str(x) for x in v])})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="search job YAML")
    args = parser.parse_args(argv)
    try:
        out = run_search(load_request(args.config))
    except UserError as exc:
        print(f"search job: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"run_id": out.run_id, "pareto": str(out.pareto_path),
                      "search_time_s": out.search_time_s,
                      "results": [{"target": r.target, "feasible": r.feasible,
                                   "cost": r.cost if r.feasible else None,
                                   "accuracy": r.accuracy if r.feasible else None}
                                  for r in out.results]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
