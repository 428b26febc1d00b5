"""The ResNet50D search space as data: which depths, ratios and widths a subnet may take.

:class:`ResNetSpace` has the same duties as :class:`~search_spaces.space.SearchSpace` (count
exactly, sample from a passed-in ``random.Random``, validate naming every bad field, read and
write OFA's dict, restrict for a training phase, describe itself) for
:class:`~search_spaces.resnet_arch.ResNetArch` values. The network behind it is always OFA's
full ResNet50D (:mod:`search_spaces.resnet_plan`); a space only narrows the *choices*, so a
restricted phase space builds the same supernet. Widths are chosen by index into
``WIDTH_MULTS`` (OFA's ``w``), ratios and depths by value. Pure Python, no torch.

Counting: a stage with base depth ``b`` has ``sum over extra depths x of ratios^(b + x)``
ratio patterns times its width choices; the stem has its ``d[0]`` choices times two width
choices. OFA's ``w[0]`` indices 0 and 1 give the same stem width (24 channels) and are still
two archs, as in OFA's own encoding.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from search_spaces.arch import ArchError
from search_spaces.resnet_arch import ResNetArch
from search_spaces.resnet_plan import (
    BASE_DEPTHS,
    EXTRA_DEPTHS,
    RATIOS,
    RESNET_FAMILY,
    STEM_DEPTHS,
    WIDTH_MULTS,
)

__all__ = ["ResNetSpace", "RESNET_SAMPLING_RULES"]

RESNET_SAMPLING_RULES = ("uniform", "min", "max")
_N_WIDTHS = 2 + len(BASE_DEPTHS)  # stem middle, stem output, four stages


def _subset(values: Sequence[Any], allowed: Sequence[Any], what: str, name: str) -> tuple:
    got = tuple(sorted(set(values)))
    bad = [v for v in got if v not in allowed]
    if not got or bad:
        raise ValueError(f"space {name}: {what} {list(bad) or 'empty'} not in {list(allowed)}")
    return got


@dataclass(frozen=True)
class ResNetSpace:
    """Subnets of OFA's ResNet50D: ``depths`` (extra blocks per stage), ``ratios`` (per
    block), ``widths`` (indices into ``WIDTH_MULTS``, per stem conv and per stage),
    ``stem_depths`` (``d[0]``: 0 skips the stem's residual conv, 2 keeps it)."""

    name: str
    resolutions: tuple[int, ...]
    depths: tuple[int, ...] = EXTRA_DEPTHS
    ratios: tuple[float, ...] = RATIOS
    widths: tuple[int, ...] = tuple(range(len(WIDTH_MULTS)))
    stem_depths: tuple[int, ...] = STEM_DEPTHS
    description: str = ""
    family: str = RESNET_FAMILY
    compound: bool = False
    kernel_transform: bool = False

    def __post_init__(self) -> None:
        n = self.name
        object.__setattr__(self, "depths", _subset(self.depths, EXTRA_DEPTHS, "depths", n))
        object.__setattr__(self, "ratios", _subset(tuple(float(v) for v in self.ratios),
                                                   RATIOS, "ratios", n))
        object.__setattr__(self, "widths", _subset(self.widths, range(len(WIDTH_MULTS)),
                                                   "width indices", n))
        object.__setattr__(self, "stem_depths", _subset(self.stem_depths, STEM_DEPTHS,
                                                        "stem depths", n))
        object.__setattr__(self, "resolutions", tuple(sorted(set(self.resolutions))))
        if not self.resolutions:
            raise ValueError(f"space {n}: no resolutions")
        if self.compound:
            raise ValueError(f"space {n}: ResNet50D has no compound (CompOFA) coupling")

    # ----------------------------------------------------------------- counting
    @property
    def base_depths(self) -> tuple[int, ...]:
        return BASE_DEPTHS

    @property
    def n_slots(self) -> tuple[int, ...]:
        """Block slots per stage (the supernet's, whatever this space allows)."""
        return tuple(b + max(EXTRA_DEPTHS) for b in BASE_DEPTHS)

    def stage_cardinality(self, stage: int) -> int:
        """Depth and ratio patterns of one stage (its width choice not included)."""
        return sum(len(self.ratios) ** (BASE_DEPTHS[stage] + x) for x in self.depths)

    def cardinality(self, with_resolution: bool = False) -> int:
        """Exact number of distinct archs (times the resolutions when asked)."""
        nw = len(self.widths)
        n = len(self.stem_depths) * nw * nw
        n *= math.prod(self.stage_cardinality(s) * nw for s in range(len(BASE_DEPTHS)))
        return n * len(self.resolutions) if with_resolution else n

    # ----------------------------------------------------------------- sampling
    def sample(self, rng: random.Random, rule: str = "uniform") -> ResNetArch:
        """Draw one arch; ``uniform`` draws each choice uniformly (OFA's
        ``sample_active_subnet``), ``min``/``max`` give the smallest/largest subnet."""
        if rule == "min":
            return self.smallest(self.resolutions[0])
        if rule == "max":
            return self.largest(self.resolutions[-1])
        if rule != "uniform":
            raise ValueError(f"sampling rule {rule!r} does not apply to {self.name}; choose "
                             f"from {RESNET_SAMPLING_RULES}")
        d = [rng.choice(self.stem_depths)] + [rng.choice(self.depths) for _ in BASE_DEPTHS]
        e = tuple(tuple(rng.choice(self.ratios) for _ in range(b + x))
                  for b, x in zip(BASE_DEPTHS, d[1:]))
        w = tuple(rng.choice(self.widths) for _ in range(_N_WIDTHS))
        return ResNetArch(d=tuple(d), e=e, w=w, r=rng.choice(self.resolutions))

    def _uniform_arch(self, stem: int, depth: int, ratio: float, width: int, r: int) -> ResNetArch:
        return ResNetArch(d=(stem,) + (depth,) * len(BASE_DEPTHS),
                          e=tuple((ratio,) * (b + depth) for b in BASE_DEPTHS),
                          w=(width,) * _N_WIDTHS, r=r)

    def largest(self, r: int | None = None) -> ResNetArch:
        return self._uniform_arch(max(self.stem_depths), max(self.depths), max(self.ratios),
                                  max(self.widths), self.resolutions[-1] if r is None else r)

    def smallest(self, r: int | None = None) -> ResNetArch:
        return self._uniform_arch(min(self.stem_depths), min(self.depths), min(self.ratios),
                                  min(self.widths), self.resolutions[0] if r is None else r)

    def middle(self, r: int | None = None) -> ResNetArch:
        """The middle choice everywhere (stem kept when allowed): a third point for training
        curves between the smallest and the largest subnet."""
        mid = lambda v: v[len(v) // 2]  # noqa: E731
        return self._uniform_arch(max(self.stem_depths), mid(self.depths), mid(self.ratios),
                                  mid(self.widths),
                                  mid(self.resolutions) if r is None else r)

    def enumerate(self, with_resolution: bool = True) -> Iterator[ResNetArch]:
        n = self.cardinality(with_resolution)
        raise ValueError(f"space {self.name} has {n:,} subnets: too many to enumerate")

    # --------------------------------------------------------------- validation
    def errors(self, arch: Any) -> list[str]:
        """Every way ``arch`` falls outside this space (empty when it belongs)."""
        if not isinstance(arch, ResNetArch):
            return [f"a {type(arch).__name__} is not a ResNet50D arch (d, e, w, r)"]
        errs: list[str] = []
        n_st = len(BASE_DEPTHS)
        if len(arch.d) != n_st + 1:
            errs.append(f"d: {len(arch.d)} values given, space {self.name} needs {n_st + 1} "
                        "(stem, then one per stage)")
        elif arch.d[0] not in self.stem_depths:
            errs.append(f"d[0]={arch.d[0]} not in {list(self.stem_depths)} (stem: 0 skips its "
                        "residual conv, 2 keeps it)")
        if len(arch.e) != n_st:
            errs.append(f"e: {len(arch.e)} stages given, space {self.name} has {n_st}")
        for i in range(min(n_st, len(arch.d) - 1)):
            if arch.d[i + 1] not in self.depths:
                errs.append(f"d[{i + 1}]={arch.d[i + 1]} not in {list(self.depths)}")
            elif i < len(arch.e) and len(arch.e[i]) != BASE_DEPTHS[i] + arch.d[i + 1]:
                errs.append(f"e of stage {i}: {len(arch.e[i])} ratios given, depth "
                            f"d[{i + 1}]={arch.d[i + 1]} has {BASE_DEPTHS[i] + arch.d[i + 1]} "
                            "blocks")
        for i, es in enumerate(arch.e):
            bad = sorted({x for x in es if x not in self.ratios})
            if bad:
                errs.append(f"e of stage {i}: {bad} not in {list(self.ratios)}")
        if len(arch.w) != _N_WIDTHS:
            errs.append(f"w: {len(arch.w)} values given, space {self.name} needs {_N_WIDTHS}")
        else:
            bad_w = [f"w[{i}]={v}" for i, v in enumerate(arch.w) if v not in self.widths]
            if bad_w:
                errs.append(f"{', '.join(bad_w)} not in width indices {list(self.widths)}")
        if arch.r not in self.resolutions:
            lo, hi = self.resolutions[0], self.resolutions[-1]
            errs.append(f"r={arch.r} not in resolutions {lo}..{hi}")
        return errs

    def validate(self, arch: Any) -> ResNetArch:
        errs = self.errors(arch)
        if errs:
            raise ArchError(f"arch not in space {self.name}: " + "; ".join(errs))
        return arch

    def contains(self, arch: Any) -> bool:
        return not self.errors(arch)

    # ---------------------------------------------------------------- OFA dicts
    def parse_arch(self, data: dict[str, Any] | str) -> ResNetArch:
        """Read an arch in OFA's dict form (``{"d": [5], "e": [18], "w": [6]}`` as
        ``OFAResNets.sample_active_subnet`` returns it, plus ``"r"`` or ``"image_size"``) or
        ours (``e`` nested per stage), and validate it against this space."""
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise ArchError(f"arch: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise ArchError(f"arch: expected an object, got {type(data).__name__}")
        if "ks" in data:
            raise ArchError(f"arch: has 'ks' (a MobileNetV3/ProxylessNAS arch); space "
                            f"{self.name} takes d, e, w and r")
        data = dict(data)
        if "r" not in data and "image_size" in data:
            data["r"] = data.pop("image_size")
        if isinstance(data.get("r"), list) and len(data["r"]) == 1:
            data["r"] = data["r"][0]
        missing = [k for k in ("d", "e", "w", "r") if k not in data]
        if missing:
            raise ArchError(f"arch: missing field(s) {', '.join(missing)} (r may be given as "
                            "image_size)")
        e = data["e"]
        if isinstance(e, list) and e and not any(isinstance(s, list) for s in e):
            data["e"] = self._split_flat(e, data["d"])
        return self.validate(ResNetArch.from_dict(data))

    def _split_flat(self, e: list[Any], d: Any) -> list[list[Any]]:
        """OFA's flat ratios (one per slot) -> the active ratios of each stage."""
        slots = self.n_slots
        errs = []
        if len(e) != sum(slots):
            errs.append(f"e: {len(e)} values given, space {self.name} needs {sum(slots)} "
                        "(one per block slot) or one list per stage")
        if (not isinstance(d, list) or len(d) != len(BASE_DEPTHS) + 1
                or any(isinstance(x, bool) or not isinstance(x, int) for x in d)):
            errs.append(f"d: expected {len(BASE_DEPTHS) + 1} integers, got {d!r}")
        else:
            errs += [f"d[{i + 1}]={x} not in {list(self.depths)}"
                     for i, x in enumerate(d[1:]) if x not in self.depths]
        if errs:
            raise ArchError(f"arch not in space {self.name}: " + "; ".join(errs))
        out, start = [], 0
        for b, n, x in zip(BASE_DEPTHS, slots, d[1:]):
            out.append(list(e[start:start + b + x]))
            start += n
        return out

    def to_ofa_dict(self, arch: ResNetArch) -> dict[str, Any]:
        """OFA's form; skipped slots repeat the stage's last active ratio."""
        e: list[float] = []
        for n, es in zip(self.n_slots, arch.e):
            e.extend(list(es) + [es[-1]] * (n - len(es)))
        return {"d": list(arch.d), "e": e, "w": list(arch.w), "r": arch.r}

    # ------------------------------------------------------------ derived spaces
    def restrict(self, kernels: Sequence[int] | None = None,
                 ratios: Sequence[float] | None = None, depths: Sequence[int] | None = None,
                 compound: bool | None = None, widths: Sequence[float] | None = None,
                 name: str | None = None) -> ResNetSpace:
        """The sub-space a training phase samples from. ``depths`` are OFA's extra depths
        (0, 1, 2); the stem may skip its residual conv only when a depth below the maximum is
        allowed (OFA draws ``d[0]`` from the phase's min and max depth). ``widths`` are width
        multipliers (0.65, 0.8, 1.0). ResNet50D has one kernel size (3) and no compound."""
        where = f"restricting {self.name}"
        if kernels is not None and 3 not in set(kernels):
            raise ValueError(f"{where}: ResNet50D's kernel is 3, not in {list(kernels)}")
        if compound:
            raise ValueError(f"{where}: ResNet50D has no compound coupling")
        new = {}
        if ratios is not None:
            got = tuple(r for r in self.ratios if any(math.isclose(r, float(v)) for v in ratios))
            if not got:
                raise ValueError(f"{where}: no ratio of {list(self.ratios)} is in "
                                 f"{list(ratios)}")
            new["ratios"] = got
        if depths is not None:
            got_d = tuple(x for x in self.depths if x in set(depths))
            if not got_d:
                raise ValueError(f"{where}: no depth of {list(self.depths)} is in "
                                 f"{list(depths)}")
            new["depths"] = got_d
            stem = {0 if min(got_d) < max(EXTRA_DEPTHS) else None,
                    2 if max(got_d) == max(EXTRA_DEPTHS) else None} - {None}
            stem_d = tuple(s for s in self.stem_depths if s in stem)
            if not stem_d:
                raise ValueError(f"{where}: depths {list(got_d)} leave no stem choice of "
                                 f"{list(self.stem_depths)}")
            new["stem_depths"] = stem_d
        if widths is not None:
            idx = tuple(i for i in self.widths
                        if any(math.isclose(WIDTH_MULTS[i], float(v)) for v in widths))
            if not idx:
                raise ValueError(f"{where}: no width of "
                                 f"{[WIDTH_MULTS[i] for i in self.widths]} is in {list(widths)}")
            new["widths"] = idx
        return replace(self, name=name or self.name, **new)

    def with_resolutions(self, resolutions: Sequence[int]) -> ResNetSpace:
        return replace(self, resolutions=tuple(resolutions))

    def to_spec(self) -> dict[str, Any]:
        """JSON-ready fields that rebuild this space (a checkpoint's spec)."""
        return {"name": self.name, "family": self.family, "description": self.description,
                "resolutions": list(self.resolutions), "depths": list(self.depths),
                "ratios": list(self.ratios), "widths": list(self.widths),
                "stem_depths": list(self.stem_depths)}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> ResNetSpace:
        return cls(name=spec["name"], description=spec.get("description", ""),
                   resolutions=tuple(spec["resolutions"]), depths=tuple(spec["depths"]),
                   ratios=tuple(spec["ratios"]), widths=tuple(spec["widths"]),
                   stem_depths=tuple(spec["stem_depths"]))

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (``ofa-platform spaces --json``)."""
        return {
            "name": self.name, "family": self.family, "description": self.description,
            "compound": False, "kernel_transform": False,
            "stem": {"depths": list(self.stem_depths),
                     "widths": [WIDTH_MULTS[i] for i in self.widths]},
            "stages": [{"base_depth": b, "extra_depths": list(self.depths),
                        "ratios": list(self.ratios),
                        "widths": [WIDTH_MULTS[i] for i in self.widths]} for b in BASE_DEPTHS],
            "resolutions": list(self.resolutions),
            "cardinality": self.cardinality(False),
            "cardinality_with_resolution": self.cardinality(True),
        }

    def describe_lines(self) -> list[str]:
        """Human-readable lines for ``ofa-platform spaces NAME``."""
        widths = [WIDTH_MULTS[i] for i in self.widths]
        lines = [f"  stem: d[0] {list(self.stem_depths)} (0 skips the residual 3x3), "
                 f"widths {widths} for its middle and output conv"]
        for i, b in enumerate(BASE_DEPTHS):
            lines.append(f"  stage {i}: depth {b}+{list(self.depths)} ratio "
                         f"{list(self.ratios)} per block, width {widths}")
        return lines
