"""Job YAML files parsed once into the typed request dataclass a library entry point takes.

A Ray Job entrypoint in ``jobs/`` holds no parsing of its own: the YAML's keys are the
request's field names, checked against the field's annotation; unknown keys, wrong types and
missing required fields are one :class:`UserError` line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ofa_platform.configs import coerce_field, read_dataclass
from ofa_platform.errors import UserError

__all__ = ["coerce_field", "load_job_config"]

T = TypeVar("T")


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
    return read_dataclass(data, cls, f"job config {path}", required=required,
                          converters=converters)
