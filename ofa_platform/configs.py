"""One reader for every YAML config the platform takes: recipes, dataset recipes, the hardware
table, Ray Job configs and studies.

A :class:`ConfigReader` checks keys and values and *collects* what is wrong (unknown keys,
wrong types, values out of range, missing fields), so a user fixes a file in one pass;
:meth:`ConfigReader.finish` turns the collection into one :class:`UserError` line. Flat
configs are read straight into their frozen dataclass by :func:`read_dataclass` (the field
annotations are the schema); nested ones (a recipe's phases) use the same reader's typed
getters. Standard library only.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from ofa_platform.errors import UserError

__all__ = ["ConfigReader", "read_dataclass", "coerce_field"]

T = TypeVar("T")

_KINDS: dict[Any, str] = {int: "int", float: "float", str: "str", bool: "bool"}


def _scalar_kind(hint: Any) -> tuple[str | None, bool]:
    """(``int``/``float``/``str``/``bool`` or None, whether None is allowed) of an annotation."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else None
    return _KINDS.get(hint), optional


def coerce_field(name: str, value: Any, hint: Any) -> Any:
    """One value checked against ``int``, ``float``, ``str``, ``bool`` or an optional of them
    (:meth:`ConfigReader.get`'s rules); a ``UserError`` naming ``name`` when it is not."""
    kind, optional = _scalar_kind(hint)
    if value is None and optional:
        return None
    if kind is None or value is None:
        raise UserError(f"{name}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
    r = ConfigReader()
    got = r.get({name: value}, name, kind, "")
    if r.errors:
        raise UserError(r.errors[0])
    return got


class ConfigReader:
    """Typed field access that records every problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def unknown(self, data: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
        import difflib

        allowed = sorted(set(allowed))
        for key in sorted(set(map(str, data)) - set(allowed)):
            near = difflib.get_close_matches(key, allowed, n=1)
            hint = (f" (did you mean {near[0]}?)" if near
                    else f" (allowed: {', '.join(allowed)})" if len(allowed) <= 12 else "")
            self.errors.append(f"{where}{key}: unknown key{hint}")

    def get(self, data: Mapping[str, Any], key: str, kind: str, where: str, default: Any = None,
            *, required: bool = False, choices: tuple[str, ...] = (),
            minimum: float | None = None, positive: bool = False) -> Any:
        """``data[key]`` checked as ``kind`` (and against ``choices``/``minimum``/``positive``);
        ``default`` when it is absent or wrong (the error recorded)."""
        if key not in data or data[key] is None:
            if required:
                self.errors.append(f"{where}{key}: missing")
            return default
        v = data[key]
        ok = {
            "str": isinstance(v, str),
            "bool": isinstance(v, bool),
            "int": isinstance(v, int) and not isinstance(v, bool),
            "float": isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        }[kind]
        if not ok:
            what = ("a finite number" if kind == "float" and isinstance(v, float)
                    else kind)  # YAML's .nan and .inf are floats, not sizes or scales
            self.errors.append(f"{where}{key}: expected {what}, got {v!r}")
            return default
        if choices and v not in choices:
            self.errors.append(f"{where}{key}: {v!r} is not one of {', '.join(choices)}")
            return default
        if positive and v <= 0:
            self.errors.append(f"{where}{key}: must be > 0, got {v!r}")
            return default
        if minimum is not None and v < minimum:
            self.errors.append(f"{where}{key}: must be >= {minimum}, got {v!r}")
            return default
        return float(v) if kind == "float" else v

    def int_list(self, data: Mapping[str, Any], key: str, where: str,
                 minimum: int = 1) -> tuple[int, ...] | None:
        """A non-empty list of integers >= ``minimum``, sorted and deduplicated."""
        if key not in data or data[key] is None:
            return None
        v = data[key]
        if (not isinstance(v, list) or not v
                or any(isinstance(x, bool) or not isinstance(x, int) or x < minimum for x in v)):
            what = "positive" if minimum == 1 else f"integers >= {minimum}"
            self.errors.append(f"{where}{key}: expected a non-empty list of {what}"
                               f"{' integers' if minimum == 1 else ''}, got {v!r}")
            return None
        return tuple(sorted(set(v)))

    def number_list(self, data: Mapping[str, Any], key: str,
                    where: str) -> tuple[float, ...] | None:
        """Positive numbers (ResNet50D's ratios and widths are fractions); integers stay
        integers so MobileNet ratios read as before."""
        if key not in data or data[key] is None:
            return None
        v = data[key]
        if (not isinstance(v, list) or not v
                or any(isinstance(x, bool) or not isinstance(x, (int, float))
                       or not math.isfinite(x) or x <= 0 for x in v)):
            self.errors.append(f"{where}{key}: expected a non-empty list of positive numbers, "
                               f"got {v!r}")
            return None
        return tuple(sorted(set(v)))

    def mapping(self, data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
        """A nested mapping (empty when absent or wrong)."""
        v = data.get(key)
        if v is None:
            return {}
        if not isinstance(v, dict):
            self.errors.append(f"{where}{key}: expected a mapping, got {v!r}")
            return {}
        return v

    def fields(self, data: Mapping[str, Any], cls: type, where: str = "", *,
               skip: Iterable[str] = (), required: Iterable[str] = (),
               converters: Mapping[str, Callable[[Any], Any]] | None = None,
               rules: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
        """The values of ``cls``'s fields present in ``data``, each checked by its annotation
        (``rules[name]``: ``choices``/``minimum``/``positive``; ``converters[name]`` for
        fields that are not scalars, raising ``UserError`` on bad input). Unknown keys, and
        missing fields without a default (or named in ``required``), are recorded."""
        skip, converters, rules = set(skip), dict(converters or {}), dict(rules or {})
        fields = [f for f in dataclasses.fields(cls) if f.name not in skip]  # type: ignore[arg-type]
        self.unknown(data, (f.name for f in fields), where)
        hints = typing.get_type_hints(cls)
        must = set(required) | {f.name for f in fields if f.default is dataclasses.MISSING
                                and f.default_factory is dataclasses.MISSING}
        out: dict[str, Any] = {}
        for f in fields:
            if f.name not in data:
                if f.name in must:
                    self.errors.append(f"{where}{f.name}: missing")
                continue
            value = data[f.name]
            if f.name in converters:
                try:
                    out[f.name] = converters[f.name](value)
                except UserError as exc:
                    self.errors.append(f"{where}{f.name}: {exc}")
                continue
            kind, optional = _scalar_kind(hints[f.name])
            if value is None:
                if optional:
                    out[f.name] = None
                else:
                    self.errors.append(f"{where}{f.name}: expected {kind}, got None")
            elif kind is None:
                self.errors.append(f"{where}{f.name}: cannot be read from a config")
            else:
                before = len(self.errors)
                got = self.get(data, f.name, kind, where, **rules.get(f.name, {}))
                if len(self.errors) == before:
                    out[f.name] = got
        return out

    def finish(self, source: str) -> None:
        """Raise every recorded problem as one ``UserError`` line prefixed with ``source``."""
        if self.errors:
            raise UserError(f"{source}: " + "; ".join(self.errors))


def read_dataclass(data: Any, cls: type[T], source: str, *, fixed: Mapping[str, Any] | None = None,
                   required: Iterable[str] = (),
                   converters: Mapping[str, Callable[[Any], Any]] | None = None,
                   rules: Mapping[str, Mapping[str, Any]] | None = None) -> T:
    """``cls`` from a YAML mapping (``fixed`` fields set by the caller, not the file); every
    problem in one ``UserError`` prefixed with ``source``."""
    if not isinstance(data, Mapping):
        raise UserError(f"{source}: expected a mapping of {cls.__name__} fields")
    fixed = dict(fixed or {})
    r = ConfigReader()
    values = r.fields(data, cls, skip=fixed, required=required, converters=converters,
                      rules=rules)
    r.finish(source)
    return cls(**values, **fixed)
