"""Job YAML files parsed once into the typed request dataclass a library entry point takes.

A Ray Job entrypoint in ``jobs/`` holds no parsing of its own: the YAML's keys are the
request's field names, checked against the field's annotation; unknown keys, wrong types and
missing required fields are one :class:`UserError` line.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ofa_platform.errors import UserError

__all__ = ["coerce_field", "load_job_config"]

T = TypeVar("T")


def coerce_field(name: str, value: Any, hint: Any) -> Any:
    """Check one value against ``int``, ``float``, ``str``, ``bool`` or an optional of them."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):  # YAML's .nan and .inf are floats, not sizes or scales
            raise UserError(f"{name}: expected a finite number, got {value!r}")
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:
        return value
    raise UserError(f"{name}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def load_job_config(path: str | Path, cls: type[T], *, required: Iterable[str] = (),
                    converters: Mapping[str, Callable[[Any], Any]] | None = None) -> T:
    """Read ``path`` (YAML mapping) into ``cls``; ``converters`` handle non-scalar fields."""
    import yaml

    from ofa_platform.files import read_user_text

    p = Path(path)
    if not p.is_file():
        raise UserError(f"job config {path}: no such file")
    text = read_user_text(p, "job config")  # binary or non-UTF-8: one line
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"job config {path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"job config {path}: expected a mapping of {cls.__name__} fields")
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(map(str, data)) - fields)
    if unknown:
        raise UserError(f"job config {path}: unknown keys {', '.join(unknown)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise UserError(f"job config {path}: {', '.join(missing)} is required")
    hints = typing.get_type_hints(cls)
    converters = converters or {}
    values = {k: converters[k](v) if k in converters else coerce_field(f"{path}: {k}", v, hints[k])
              for k, v in data.items()}
    return cls(**values)
