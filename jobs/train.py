"""Ray Job entrypoint: ``ray job submit -- python jobs/train.py jobs/train_cifar10_smoke.yaml``.

The YAML holds the same fields as ``ofa-platform train`` flags (underscored names, e.g.
``epoch_scale``); it is parsed once into a typed ``TrainRequest`` and handed to the library, so
a job and the CLI run exactly the same code. Bad configs exit 2 with one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any

from ofa_platform.errors import UserError
from ofa_platform.train.runner import TrainRequest, prepare, run_training

__all__ = ["load_request", "main"]


def _check_type(name: str, value: Any, hint: Any) -> Any:
    """Coerce/validate one field against its annotation (int, float, str, bool, optional)."""
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


def load_request(path: str | Path) -> TrainRequest:
    """Parse a job YAML into a ``TrainRequest``; unknown keys and wrong types are errors."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"job config {path}: no such file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"job config {path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"job config {path}: expected a mapping of train settings")
    hints = typing.get_type_hints(TrainRequest)
    fields = {f.name for f in dataclasses.fields(TrainRequest)}
    unknown = sorted(set(map(str, data)) - fields)
    if unknown:
        raise UserError(f"job config {path}: unknown keys {', '.join(unknown)}")
    values = {k: _check_type(f"{path}: {k}", v, hints[k]) for k, v in data.items()}
    for required in ("schedule", "data"):
        if required not in values:
            raise UserError(f"job config {path}: {required} is required")
    return TrainRequest(**values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="job YAML (see jobs/train_cifar10_smoke.yaml)")
    args = parser.parse_args(argv)
    try:
        outcome = run_training(prepare(load_request(args.config)))
    except UserError as exc:
        print(f"jobs/train.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"{outcome.status} run {outcome.run_id} checkpoint {outcome.checkpoint_dir}")
    return 0 if outcome.status == "FINISHED" else 1


if __name__ == "__main__":
    sys.exit(main())
