"""Command-line options read from the request dataclasses, not typed out a second time.

A request (``TrainRequest``, ``SearchRequest``) is the one place a knob's name and default
live; the CLI takes its defaults from there (:func:`defaults`) and builds the request from
the parsed flags whose ``dest`` is a field name (:func:`request_from_args`). A job YAML is
read into the same dataclass by :mod:`ofa_platform.jobconfig`.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, TypeVar

__all__ = ["defaults", "request_from_args"]

T = TypeVar("T")


def defaults(cls: type) -> dict[str, Any]:
    """Each field's default, by name (fields without one are left out)."""
    return {f.name: f.default for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING}


def request_from_args(cls: type[T], args: argparse.Namespace, **extra: Any) -> T:
    """``cls`` from every parsed flag whose ``dest`` is one of its fields, plus ``extra``
    (fields the flags spell differently, e.g. an inverted ``--no-mlflow``)."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in vars(args).items() if k in names}
    return cls(**{**values, **extra})
