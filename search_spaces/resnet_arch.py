"""The ResNet50D subnet as one value: stem and stage depths, block ratios, widths, resolution.

:class:`ResNetArch` is the ResNet sibling of :class:`~search_spaces.arch.ArchConfig`: frozen,
hashable, JSON-serialisable, and canonical. It keeps OFA's ``d`` and ``w`` lists as they are
(``d[0]`` says whether the stem's residual 3x3 runs, ``d[1:]`` are the extra blocks of the
four stages; ``w`` holds six width *indices*: stem middle, stem output, four stages) but holds
the expand ratios per stage and only for the *active* blocks, so two OFA dicts that differ only
in skipped blocks' ratios are the same arch (caches are keyed by arch). OFA's flat form (18
ratios, one per block slot) is read and written by :class:`~search_spaces.resnet_space.
ResNetSpace`, which knows how many slots each stage has.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from search_spaces.arch import ArchError

__all__ = ["ResNetArch"]


def _ints(values: Any, field: str) -> tuple[int, ...]:
    if not isinstance(values, (list, tuple)):
        raise ArchError(f"{field}: expected a list, got {type(values).__name__}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
            raise ArchError(f"{field}: {v!r} is not an integer")
        out.append(int(v))
    return tuple(out)


def _ratios(values: Any, field: str) -> tuple[float, ...]:
    if not isinstance(values, (list, tuple)):
        raise ArchError(f"{field}: expected a list, got {type(values).__name__}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ArchError(f"{field}: {v!r} is not a number")
        out.append(float(v))
    return tuple(out)


@dataclass(frozen=True)
class ResNetArch:
    """A subnet of OFA's ResNet50D supernet.

    ``d``: five ints, ``d[0]`` the stem (0 skips its residual 3x3 conv, 2 keeps it, as OFA's
    sampler draws it) and ``d[1:]`` the extra blocks of each stage on top of its base depth.
    ``e``: per stage, the expand ratio of each active block. ``w``: six width indices (stem
    middle conv, stem output conv, the four stages) into the supernet's width multipliers.
    ``r``: input resolution in pixels.
    """

    d: tuple[int, ...]
    e: tuple[tuple[float, ...], ...]
    w: tuple[int, ...]
    r: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "d", _ints(self.d, "d"))
        if not isinstance(self.e, (list, tuple)):
            raise ArchError(f"e: expected a list per stage, got {type(self.e).__name__}")
        object.__setattr__(self, "e", tuple(_ratios(s, f"e[{i}]") for i, s in enumerate(self.e)))
        object.__setattr__(self, "w", _ints(self.w, "w"))
        if isinstance(self.r, bool) or not isinstance(self.r, int):
            raise ArchError(f"r: {self.r!r} is not an integer")

    @property
    def stage_blocks(self) -> tuple[int, ...]:
        """Active blocks of each stage."""
        return tuple(len(s) for s in self.e)

    @property
    def n_blocks(self) -> int:
        return sum(self.stage_blocks)

    @property
    def stem_skipped(self) -> bool:
        """True when the stem's residual 3x3 conv is left out (OFA: ``d[0] != max depth``)."""
        return self.d[0] == 0

    def replace(self, **changes: Any) -> ResNetArch:
        data = {"d": self.d, "e": self.e, "w": self.w, "r": self.r}
        data.update(changes)
        return ResNetArch(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: ``e`` nested per stage (not OFA's flat form; see ResNetSpace)."""
        return {"d": list(self.d), "e": [list(s) for s in self.e], "w": list(self.w),
                "r": self.r}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @property
    def key(self) -> str:
        """A short stable string for caches and MLflow params."""
        stages = "|".join(",".join(f"{x:g}" for x in s) for s in self.e)
        return (f"r{self.r}:d{''.join(map(str, self.d))}:w{''.join(map(str, self.w))}:"
                f"{stages}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResNetArch:
        """Read the nested form written by :meth:`to_dict`."""
        if not isinstance(data, dict):
            raise ArchError(f"arch: expected an object, got {type(data).__name__}")
        missing = [k for k in ("d", "e", "w", "r") if k not in data]
        if missing:
            raise ArchError(f"arch: missing field(s) {', '.join(missing)}")
        return cls(d=data["d"], e=data["e"], w=data["w"], r=data["r"])

    @classmethod
    def from_json(cls, text: str) -> ResNetArch:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchError(f"arch: not valid JSON ({exc.msg})") from None
        return cls.from_dict(data)
