"""Search spaces as declarative data: per-stage choices, coupling, resolutions.

A :class:`SearchSpace` knows which :class:`ArchConfig` values belong to it. It counts them
exactly, samples them from a passed-in ``random.Random`` (no global RNG), enumerates small
spaces, restricts itself for a training phase, and reads and writes OFA's flat dict form.
It is pure Python (no torch), so the CLI, the search and the tests use it cheaply.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from search_spaces.arch import ArchConfig, ArchError

__all__ = ["StageChoices", "SearchSpace", "SAMPLING_RULES", "parse_resolutions"]

SAMPLING_RULES = ("uniform", "compound", "min", "max")
_ENUMERATION_LIMIT = 2_000_000


@dataclass(frozen=True)
class StageChoices:
    """What one stage may be: its depths, and the kernels and expand ratios of each block."""

    depths: tuple[int, ...]
    kernels: tuple[int, ...]
    ratios: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("depths", "kernels", "ratios"):
            values = tuple(sorted(set(int(v) for v in getattr(self, name))))
            if not values or values[0] <= 0:
                raise ValueError(f"stage {name} must be positive and non-empty, got {values}")
            object.__setattr__(self, name, values)

    @property
    def n_slots(self) -> int:
        return max(self.depths)

    def coupled_ratio(self, depth: int) -> int:
        """CompOFA's rule: the i-th smallest depth goes with the i-th smallest ratio."""
        if len(self.ratios) == 1:
            return self.ratios[0]
        return self.ratios[self.depths.index(depth)]

    def can_couple(self) -> bool:
        return len(self.ratios) == 1 or len(self.ratios) == len(self.depths)


def parse_resolutions(text: str) -> tuple[int, ...]:
    """Parse ``"160-224:4"`` (start-stop:step, inclusive) or ``"128,160,224"``."""
    text = text.strip()
    try:
        if "-" in text:
            span, _, step = text.partition(":")
            lo, hi = (int(v) for v in span.split("-"))
            step_i = int(step) if step else 4
            if step_i <= 0 or hi < lo:
                raise ValueError
            return tuple(range(lo, hi + 1, step_i))
        return tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise ValueError(f"resolutions {text!r}: expected 'LO-HI:STEP' or 'R1,R2,...'") from None


def _pick(have: tuple[int, ...], want: Sequence[int] | None, what: str,
          where: str) -> tuple[int, ...]:
    """Intersect a stage's choices with a phase's list; a fixed (single) choice stays."""
    if want is None or len(have) == 1:
        return have
    got = tuple(v for v in have if v in set(want))
    if not got:
        raise ValueError(f"{where}: no {what} of {list(have)} is in {list(want)}")
    return got


@dataclass(frozen=True)
class SearchSpace:
    """A set of subnets of one supernet family.

    ``compound`` couples each stage's expand ratio to its depth (CompOFA): every block of a
    stage then shares the ratio ``stage.coupled_ratio(depth)``.
    """

    name: str
    family: str
    stages: tuple[StageChoices, ...]
    resolutions: tuple[int, ...]
    compound: bool = False
    description: str = ""
    kernel_transform: bool = True
    meta: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "resolutions", tuple(sorted(set(self.resolutions))))
        if not self.resolutions:
            raise ValueError(f"space {self.name}: no resolutions")
        if self.compound and not all(s.can_couple() for s in self.stages):
            raise ValueError(f"space {self.name}: compound needs as many ratios as depths")

    # ----------------------------------------------------------------- counting
    def stage_cardinality(self, stage: StageChoices) -> int:
        nk, nr = len(stage.kernels), len(stage.ratios)
        if self.compound:
            return sum(nk**d for d in stage.depths)
        return sum((nk * nr) ** d for d in stage.depths)

    def cardinality(self, with_resolution: bool = False) -> int:
        """Exact number of distinct subnets (times the resolutions when asked)."""
        n = math.prod(self.stage_cardinality(s) for s in self.stages)
        return n * len(self.resolutions) if with_resolution else n

    @property
    def n_slots(self) -> tuple[int, ...]:
        return tuple(s.n_slots for s in self.stages)

    # ----------------------------------------------------------------- sampling
    def sample(self, rng: random.Random, rule: str = "uniform") -> ArchConfig:
        """Draw one arch. ``uniform`` draws each gene uniformly (OFA's sampler); ``compound``
        couples ratio to depth; ``min``/``max`` give the smallest/largest subnet."""
        if rule == "min":
            return self.smallest(self.resolutions[0])
        if rule == "max":
            return self.largest(self.resolutions[-1])
        if rule not in SAMPLING_RULES:
            raise ValueError(f"unknown sampling rule {rule!r}; choose from {SAMPLING_RULES}")
        coupled = self.compound or rule == "compound"
        ks, es = [], []
        for stage in self.stages:
            d = rng.choice(stage.depths)
            ks.append(tuple(rng.choice(stage.kernels) for _ in range(d)))
            if coupled:
                if not stage.can_couple():
                    raise ValueError(f"space {self.name}: compound sampling needs as many "
                                     "ratios as depths in every stage")
                es.append((stage.coupled_ratio(d),) * d)
            else:
                es.append(tuple(rng.choice(stage.ratios) for _ in range(d)))
        return ArchConfig(ks=tuple(ks), e=tuple(es), r=rng.choice(self.resolutions))

    def largest(self, r: int | None = None) -> ArchConfig:
        return ArchConfig(
            ks=tuple((max(s.kernels),) * s.n_slots for s in self.stages),
            e=tuple((max(s.ratios),) * s.n_slots for s in self.stages),
            r=self.resolutions[-1] if r is None else r,
        )

    def smallest(self, r: int | None = None) -> ArchConfig:
        ks, es = [], []
        for s in self.stages:
            d = min(s.depths)
            ks.append((min(s.kernels),) * d)
            es.append(((s.coupled_ratio(d) if self.compound else min(s.ratios)),) * d)
        return ArchConfig(ks=tuple(ks), e=tuple(es), r=self.resolutions[0] if r is None else r)

    def enumerate(self, with_resolution: bool = True) -> Iterator[ArchConfig]:
        """Every subnet, in a fixed order; only for small spaces (CompOFA's 243)."""
        n = self.cardinality(with_resolution)
        if n > _ENUMERATION_LIMIT:
            raise ValueError(f"space {self.name} has {n:,} subnets: too many to enumerate")
        per_stage = [list(self._stage_options(s)) for s in self.stages]
        resolutions = self.resolutions if with_resolution else (self.resolutions[-1],)
        for r in resolutions:
            for combo in itertools.product(*per_stage):
                yield ArchConfig(ks=tuple(c[0] for c in combo), e=tuple(c[1] for c in combo), r=r)

    def _stage_options(
        self, stage: StageChoices
    ) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
        for d in stage.depths:
            for ks in itertools.product(stage.kernels, repeat=d):
                if self.compound:
                    yield ks, (stage.coupled_ratio(d),) * d
                else:
                    for es in itertools.product(stage.ratios, repeat=d):
                        yield ks, es

    # --------------------------------------------------------------- validation
    def errors(self, arch: ArchConfig) -> list[str]:
        """Every way ``arch`` falls outside this space (empty when it belongs)."""
        errs: list[str] = []
        if len(arch.ks) != len(self.stages):
            return [f"d: {len(arch.ks)} stages given, space {self.name} has {len(self.stages)}"]
        for i, (stage, ks, es) in enumerate(zip(self.stages, arch.ks, arch.e)):
            if len(ks) not in stage.depths:
                errs.append(f"d[{i}]={len(ks)} not in {list(stage.depths)}")
            bad_k = sorted({k for k in ks if k not in stage.kernels})
            if bad_k:
                errs.append(f"ks of stage {i}: {bad_k} not in {list(stage.kernels)}")
            bad_e = sorted({e for e in es if e not in stage.ratios})
            if bad_e:
                errs.append(f"e of stage {i}: {bad_e} not in {list(stage.ratios)}")
            elif self.compound and len(ks) in stage.depths:
                want = stage.coupled_ratio(len(ks))
                if any(e != want for e in es):
                    errs.append(f"e of stage {i}: compound space {self.name} needs ratio {want} "
                                f"at depth {len(ks)}, got {list(es)}")
        if arch.r not in self.resolutions:
            lo, hi = self.resolutions[0], self.resolutions[-1]
            errs.append(f"r={arch.r} not in resolutions {lo}..{hi}")
        return errs

    def validate(self, arch: ArchConfig) -> ArchConfig:
        errs = self.errors(arch)
        if errs:
            raise ArchError(f"arch not in space {self.name}: " + "; ".join(errs))
        return arch

    def contains(self, arch: ArchConfig) -> bool:
        return not self.errors(arch)

    # ---------------------------------------------------------------- OFA dicts
    def parse_arch(self, data: dict[str, Any] | str) -> ArchConfig:
        """Read an arch in OFA's flat dict form or ours, and validate it against this space.

        OFA's form: ``{"ks": [one per slot], "e": [...], "d": [one per stage], "r": int}``;
        ``"image_size"`` or ``"r": [int]`` are accepted for the resolution.
        """
        if isinstance(data, str):
            import json

            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise ArchError(f"arch: not valid JSON ({exc.msg})") from None
        if not isinstance(data, dict):
            raise ArchError(f"arch: expected an object, got {type(data).__name__}")
        ks = data.get("ks")
        if isinstance(ks, list) and ks and all(isinstance(s, list) for s in ks):
            return self.validate(ArchConfig.from_dict(data))
        return self.validate(self._from_flat(data))

    def _from_flat(self, data: dict[str, Any]) -> ArchConfig:
        errs: list[str] = []
        n_total, n_stages = sum(self.n_slots), len(self.stages)
        r = data.get("r", data.get("image_size"))
        if isinstance(r, list) and len(r) == 1:
            r = r[0]
        if r is None:
            errs.append("r: missing (also accepted as image_size)")
        elif isinstance(r, bool) or not isinstance(r, int):
            errs.append(f"r: {r!r} is not an integer")
        lists: dict[str, list[Any]] = {}
        for key, n in (("ks", n_total), ("e", n_total), ("d", n_stages)):
            v = data.get(key)
            if not isinstance(v, list):
                errs.append(f"{key}: missing or not a list")
            elif len(v) != n:
                errs.append(f"{key}: {len(v)} values given, space {self.name} needs {n}")
            elif any(isinstance(x, bool) or not isinstance(x, (int, float)) or int(x) != x
                     for x in v):
                errs.append(f"{key}: values must be integers")
            else:
                lists[key] = [int(x) for x in v]
        if "ks" in lists:
            bad = sorted({k for k in lists["ks"]} - {k for s in self.stages for k in s.kernels})
            if bad:
                errs.append(f"ks: {bad} not a kernel size of {self.name}")
        if "e" in lists:
            bad = sorted({k for k in lists["e"]} - {k for s in self.stages for k in s.ratios})
            if bad:
                errs.append(f"e: {bad} not an expand ratio of {self.name}")
        if "d" in lists:
            for i, (dv, s) in enumerate(zip(lists["d"], self.stages)):
                if dv not in s.depths:
                    errs.append(f"d[{i}]={dv} not in {list(s.depths)}")
        if errs:
            raise ArchError(f"arch not in space {self.name}: " + "; ".join(errs))
        ks_out, e_out, start = [], [], 0
        for s, dv in zip(self.stages, lists["d"]):
            ks_out.append(tuple(lists["ks"][start:start + dv]))
            e_out.append(tuple(lists["e"][start:start + dv]))
            start += s.n_slots
        return ArchConfig(ks=tuple(ks_out), e=tuple(e_out), r=int(r))

    def to_ofa_dict(self, arch: ArchConfig) -> dict[str, Any]:
        """OFA's flat form; skipped slots repeat the stage's last active block."""
        ks, es = [], []
        for s, sk, se in zip(self.stages, arch.ks, arch.e):
            pad = s.n_slots - len(sk)
            ks.extend(list(sk) + [sk[-1]] * pad)
            es.extend(list(se) + [se[-1]] * pad)
        return {"ks": ks, "e": es, "d": list(arch.d), "r": arch.r}

    # ------------------------------------------------------------ derived spaces
    def restrict(self, kernels: Sequence[int] | None = None, ratios: Sequence[int] | None = None,
                 depths: Sequence[int] | None = None, compound: bool | None = None,
                 name: str | None = None) -> SearchSpace:
        """The sub-space a training phase samples from. Stages whose choice is fixed (one
        depth, one kernel) keep it; an empty intersection is an error."""
        new_stages = []
        for i, s in enumerate(self.stages):
            where = f"restricting {self.name} stage {i}"
            new_stages.append(StageChoices(depths=_pick(s.depths, depths, "depth", where),
                                           kernels=_pick(s.kernels, kernels, "kernel", where),
                                           ratios=_pick(s.ratios, ratios, "ratio", where)))
        return replace(self, name=name or self.name, stages=tuple(new_stages),
                       compound=self.compound if compound is None else compound)

    def with_resolutions(self, resolutions: Sequence[int]) -> SearchSpace:
        return replace(self, resolutions=tuple(resolutions))

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (``ofa-platform spaces --json``)."""
        return {
            "name": self.name,
            "family": self.family,
            "description": self.description,
            "compound": self.compound,
            "kernel_transform": self.kernel_transform,
            "stages": [{"depths": list(s.depths), "kernels": list(s.kernels),
                        "ratios": list(s.ratios)} for s in self.stages],
            "resolutions": list(self.resolutions),
            "cardinality": self.cardinality(False),
            "cardinality_with_resolution": self.cardinality(True),
        }
