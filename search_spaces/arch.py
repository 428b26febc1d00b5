"""The architecture value: one frozen, typed, JSON-serialisable description of a subnet.

An :class:`ArchConfig` is the single value that flows unchanged from the sampler to the
supernet, the estimators, the search and MLflow. It is canonical: it holds only the *active*
blocks of each stage, so two OFA dicts that differ only in skipped slots are the same arch
(which matters for caches keyed by arch). OFA's flat dict form is read and written by the
search space, which knows how many slots each stage has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["ArchConfig", "ArchError", "arch_from_dict"]


class ArchError(ValueError):
    """An architecture that does not belong to a space; the message names every wrong field."""


def _int_tuple(values: Any, field: str) -> tuple[int, ...]:
    if not isinstance(values, (list, tuple)):
        raise ArchError(f"{field}: expected a list, got {type(values).__name__}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
            raise ArchError(f"{field}: {v!r} is not an integer")
        out.append(int(v))
    return tuple(out)


@dataclass(frozen=True)
class ArchConfig:
    """A subnet: per stage, the kernel and expand ratio of each active block, plus resolution.

    ``ks[s][b]`` and ``e[s][b]`` are the kernel size and expand ratio of block ``b`` of elastic
    stage ``s``; the stage depth is ``len(ks[s])``. ``r`` is the input resolution in pixels.
    """

    ks: tuple[tuple[int, ...], ...]
    e: tuple[tuple[int, ...], ...]
    r: int

    def __post_init__(self) -> None:
        ks = tuple(_int_tuple(s, f"ks[{i}]") for i, s in enumerate(self.ks))
        e = tuple(_int_tuple(s, f"e[{i}]") for i, s in enumerate(self.e))
        object.__setattr__(self, "ks", ks)
        object.__setattr__(self, "e", e)
        if isinstance(self.r, bool) or not isinstance(self.r, int):
            raise ArchError(f"r: {self.r!r} is not an integer")
        if len(ks) != len(e) or any(len(a) != len(b) for a, b in zip(ks, e)):
            raise ArchError("ks and e must have the same number of blocks in every stage")

    @property
    def d(self) -> tuple[int, ...]:
        """Depth (number of active blocks) of each stage."""
        return tuple(len(s) for s in self.ks)

    @property
    def n_blocks(self) -> int:
        return sum(self.d)

    def replace(self, **changes: Any) -> ArchConfig:
        data = {"ks": self.ks, "e": self.e, "r": self.r}
        data.update(changes)
        return ArchConfig(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form: nested lists per stage (not OFA's flat form; see SearchSpace)."""
        return {"ks": [list(s) for s in self.ks], "e": [list(s) for s in self.e],
                "d": list(self.d), "r": self.r}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @property
    def key(self) -> str:
        """A short stable string for caches and MLflow params."""
        stages = "|".join(
            ",".join(f"{k}{e}" for k, e in zip(ks, es)) for ks, es in zip(self.ks, self.e)
        )
        return f"r{self.r}:{stages}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchConfig:
        """Read the nested form written by :meth:`to_dict` (``d`` is checked if present)."""
        if not isinstance(data, dict):
            raise ArchError(f"arch: expected an object, got {type(data).__name__}")
        missing = [k for k in ("ks", "e", "r") if k not in data]
        if missing:
            raise ArchError(f"arch: missing field(s) {', '.join(missing)}")
        arch = cls(ks=tuple(data["ks"]), e=tuple(data["e"]), r=data["r"])
        if "d" in data and tuple(data["d"]) != arch.d:
            raise ArchError(f"d: {list(data['d'])} does not match the blocks given {list(arch.d)}")
        return arch

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchError(f"arch: not valid JSON ({exc.msg})") from None
        return cls.from_dict(data)


def arch_from_dict(data: dict[str, Any]) -> Any:
    """The arch value of a ``to_dict`` form, whichever family wrote it: a dict with ``w``
    (per-stage widths) is a :class:`~search_spaces.resnet_arch.ResNetArch`, else an
    :class:`ArchConfig`. For code that only carries archs around (Ray actors, caches)."""
    if isinstance(data, dict) and "w" in data:
        from search_spaces.resnet_arch import ResNetArch

        return ResNetArch.from_dict(data)
    return ArchConfig.from_dict(data)
