"""Ray Job entrypoint: ``ray job submit --working-dir . -- python jobs/search.py
jobs/search_note10.yaml``.

The YAML holds the fields of ``ofa-platform search`` (underscored names, ``targets`` as a list
or a comma string); it becomes a typed ``SearchRequest`` and runs the same library code as the
CLI. Bad configs exit 2 with one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from ofa_platform.errors import UserError
from ofa_platform.search.runner import SearchRequest, parse_targets, run_search

__all__ = ["load_request", "main"]


def _coerce(name: str, value: Any, hint: Any) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise UserError(f"{name}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def load_request(path: str | Path) -> SearchRequest:
    """Parse a job YAML into a ``SearchRequest``; unknown keys and wrong types are errors."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"job config {path}: no such file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"job config {path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"job config {path}: expected a mapping of search settings")
    fields = {f.name for f in dataclasses.fields(SearchRequest)}
    unknown = sorted(set(map(str, data)) - fields)
    if unknown:
        raise UserError(f"job config {path}: unknown keys {', '.join(unknown)}")
    for required in ("space", "targets", "latency"):
        if required not in data:
            raise UserError(f"job config {path}: {required} is required")
    hints = typing.get_type_hints(SearchRequest)
    values = {k: (parse_targets(v if isinstance(v, str) else [str(x) for x in v])
                  if k == "targets" else _coerce(f"{path}: {k}", v, hints[k]))
              for k, v in data.items()}
    return SearchRequest(**values)


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
