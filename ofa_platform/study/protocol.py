"""A study's protocol as data: which recipes, on what data, for how long, evaluated how.

A study puts the once-for-all recipes side by side on one dataset (issue 12). The protocol is a
YAML file in ``jobs/studies/``; its keys are :class:`StudyProtocol`'s fields (nested sections:
:class:`SearchSpec`, :class:`PeerSpec`), checked as every job config is (unknown keys, wrong
types: one line). ``scales`` holds named overrides of the top-level fields (``--scale paper``:
the papers' lengths on the full dataset for a GPU cluster), so the small study and the paper-scale
one are the same protocol.

:func:`study_units` turns a protocol into the ordered units a run works through; a unit's
``key`` is what MLflow files it under (``ofa.study_unit``), so a rerun knows what is done.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ofa_platform.configs import coerce_field
from ofa_platform.errors import UserError
from ofa_platform.paths import jobs_dir

__all__ = ["PeerSpec", "SearchSpec", "StudyProtocol", "StudyUnit", "default_studies_dir",
           "load_study", "study_units", "PEER_ARCHS"]

#: The archs a from-scratch peer can train: the ends of its recipe's space.
PEER_ARCHS = ("smallest", "largest")


def default_studies_dir() -> Path:
    """``jobs/studies`` of this checkout."""
    return jobs_dir("studies")


@dataclass(frozen=True)
class SearchSpec:
    """How each trained supernet is searched (on the validation split held out of the
    training rows, never on the test split) and which subnets are then scored on the test
    split: the ``samples`` random subnets that fit the accuracy predictor and the subnets
    the search finds for ``targets`` MAC budgets spread across the space."""

    samples: int = 40
    population: int = 40
    generations: int = 20
    targets: int = 4
    strategy: str = "bottom-up+"
    calib_images: int = 500
    val_images: int | None = None  # None: the whole validation split


@dataclass(frozen=True)
class PeerSpec:
    """A from-scratch peer: ``arch`` (an end of ``recipe``'s space) trained alone as a plain
    network, for as many epochs as the whole scaled ``recipe``, with the optimizer settings
    of the recipe's first phase (OFA's headline comparison)."""

    recipe: str
    arch: str

    @property
    def name(self) -> str:
        return f"scratch-{self.arch}"


@dataclass(frozen=True)
class StudyProtocol:
    """One study. Accuracies that are reported are measured on the dataset's test split:
    ``test_images`` (None: all of it) for the final subnets, ``curve_images`` for the
    per-epoch curves (each with its binomial standard error)."""

    name: str
    data: str
    recipes: tuple[str, ...]
    description: str = ""
    experiment: str = ""  # default: study-<name>
    subset: int | None = None  # training rows (10% of them held out as the validation split)
    epoch_scale: float = 1.0
    batch_size: int = 64  # per worker
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    seeds: tuple[int, ...] = (0,)
    curve_images: int | None = 2000
    test_images: int | None = None
    recal_images: int = 500
    #: the supernet's stem: ``None`` as the dataset recipe says (CIFAR: stride 1, keeping
    #: 32x32), ``false`` the ImageNet stem (stride 2: a quarter of the compute)
    small_input: bool | None = None
    peers: tuple[PeerSpec, ...] = ()
    search: SearchSpec = field(default_factory=SearchSpec)
    scale: str = "default"
    scales: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    source: str = ""

    @property
    def experiment_name(self) -> str:
        return self.experiment or f"study-{self.name}"

    @property
    def digest(self) -> str:
        """What the study's units depend on (everything but names, notes and the other
        scales), hashed: a rerun continues only runs of the same protocol; an edited one
        starts afresh instead of resuming a run trained under other settings."""
        import hashlib
        import json

        skip = {"name", "description", "experiment", "notes", "scales", "source", "scale"}
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in skip}
        text = json.dumps(data, sort_keys=True, default=_jsonable)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def with_scale(self, scale: str | None) -> StudyProtocol:
        """The protocol with the named scale's overrides applied (``None``/``default``: as
        written)."""
        if scale in (None, "default"):
            return self
        if scale not in self.scales:
            known = ", ".join(["default", *self.scales]) or "default"
            raise UserError(f"study {self.name}: no scale {scale!r}; known: {known}")
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in ("source", "scale")}
        data.update(self.scales[scale])
        return _checked(replace(self, **_coerce(data, f"{self.source}: scales.{scale}"),
                                scale=scale))


@dataclass(frozen=True)
class StudyUnit:
    """One step of a study: ``kind`` is ``train`` (a recipe or a peer), ``search`` or
    ``eval`` (subnets scored on the test split); ``key`` is its MLflow identity
    (``train/ofa/seed0``, ``eval/scratch-largest/seed0``)."""

    kind: str
    subject: str  # the recipe, or the peer's name
    seed: int
    recipe: str  # the recipe (a peer's: the one it matches)
    peer: PeerSpec | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.subject}/seed{self.seed}"

    @property
    def role(self) -> str:
        return "scratch" if self.peer is not None else "recipe"


def study_units(protocol: StudyProtocol) -> list[StudyUnit]:
    """Every unit in the order a run takes them: per seed, each recipe trained, searched and
    scored, then each peer trained and scored (a study cut short has whole recipes)."""
    units: list[StudyUnit] = []
    for seed in protocol.seeds:
        for recipe in protocol.recipes:
            units += [StudyUnit(kind, recipe, seed, recipe) for kind in ("train", "search", "eval")]
        for peer in protocol.peers:
            units += [StudyUnit(kind, peer.name, seed, peer.recipe, peer)
                      for kind in ("train", "eval")]
    return units


# --------------------------------------------------------------------------- reading
_NESTED = {"search", "peers", "scales", "seeds", "recipes", "notes"}


def load_study(name_or_path: str | Path, scale: str | None = None,
               studies_dir: str | Path | None = None) -> StudyProtocol:
    """A study by name (a file in ``jobs/studies``) or path; every problem is one
    ``UserError`` line naming the file (and the key)."""
    import yaml

    from ofa_platform.files import read_user_text

    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        d = Path(studies_dir) if studies_dir is not None else default_studies_dir()
        path = d / f"{text}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in d.glob("*.yaml"))) or "none"
            raise UserError(f"unknown study {text!r}; known: {known}")
    if not path.is_file():
        raise UserError(f"study {path}: no such file")
    try:
        data = yaml.safe_load(read_user_text(path, "study"))
    except yaml.YAMLError as exc:
        raise UserError(f"study {path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"study {path}: expected a mapping of study fields")
    for key in ("name", "data", "recipes"):
        if key not in data:
            raise UserError(f"study {path}: {key} is required")
    protocol = _checked(StudyProtocol(**_coerce(data, f"study {path}"), source=f"study {path}"))
    return protocol.with_scale(scale)


def _coerce(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The fields of :class:`StudyProtocol` from a YAML mapping, each checked."""
    fields = {f.name for f in dataclasses.fields(StudyProtocol)} - {"source", "scale"}
    _no_unknown(data, fields, where)
    hints = typing.get_type_hints(StudyProtocol)
    out: dict[str, Any] = {}
    for k, v in data.items():
        at = f"{where}: {k}"
        if k == "search":
            out[k] = v if isinstance(v, SearchSpec) else _section(v, SearchSpec, at)
        elif k == "peers":
            out[k] = tuple(p if isinstance(p, PeerSpec) else _section(p, PeerSpec, f"{at}[{i}]")
                           for i, p in enumerate(_list(v, at)))
        elif k in ("recipes", "notes"):
            out[k] = tuple(coerce_field(at, x, str) for x in _list(v, at))
        elif k == "seeds":
            out[k] = tuple(coerce_field(at, x, int) for x in _list(v, at))
        elif k == "scales":
            if not isinstance(v, Mapping) or not all(isinstance(s, Mapping) for s in v.values()):
                raise UserError(f"{at}: expected a mapping of scale name -> field overrides")
            for name, over in v.items():
                _no_unknown(over, fields - {"scales", "name"}, f"{at}.{name}")
            out[k] = {str(n): dict(o) for n, o in v.items()}
        else:
            out[k] = coerce_field(at, v, hints[k])
    return out


def _jsonable(value: Any) -> Any:
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else str(value)


def _no_unknown(data: Mapping[str, Any], allowed: Any, where: str) -> None:
    """Unknown keys of one section, all named in one line (the config reader's wording)."""
    from ofa_platform.configs import ConfigReader

    r = ConfigReader()
    r.unknown(data, allowed, "")
    r.finish(where)


def _list(value: Any, where: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    raise UserError(f"{where}: expected a list, got {value!r}")


def _section(value: Any, cls: type[Any], where: str) -> Any:
    if not isinstance(value, Mapping):
        raise UserError(f"{where}: expected a mapping of {', '.join(_names(cls))}")
    _no_unknown(value, _names(cls), where)
    hints = typing.get_type_hints(cls)
    return cls(**{k: coerce_field(f"{where}.{k}", v, hints[k]) for k, v in value.items()})


def _names(cls: type[Any]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _checked(p: StudyProtocol) -> StudyProtocol:
    """Ranges and references: recipes and peers that exist, sizes that are sizes."""
    from ofa_platform.train.schedule import load_schedule

    where = p.source or f"study {p.name}"
    if not p.recipes:
        raise UserError(f"{where}: recipes: name at least one recipe")
    if len(set(p.recipes)) != len(p.recipes):
        raise UserError(f"{where}: recipes: a recipe is listed twice")
    if not p.seeds or len(set(p.seeds)) != len(p.seeds):
        raise UserError(f"{where}: seeds: at least one, none twice")
    for recipe in p.recipes:
        load_schedule(recipe)  # an unknown recipe is one line naming the known ones
    positive = {"batch_size": p.batch_size, "workers": p.workers,
                "recal_images": p.recal_images, "search.samples": p.search.samples,
                "search.population": p.search.population,
                "search.generations": p.search.generations, "search.targets": p.search.targets,
                "search.calib_images": p.search.calib_images}
    optional = {"subset": p.subset, "curve_images": p.curve_images,
                "test_images": p.test_images, "search.val_images": p.search.val_images}
    for key, value in {**positive, **{k: v for k, v in optional.items() if v is not None}}.items():
        if value < 1:
            raise UserError(f"{where}: {key}: expected a positive integer, got {value}")
    from ofa_platform.search.predictor import MIN_PREDICTOR_ARCHS

    if p.search.samples < MIN_PREDICTOR_ARCHS:
        raise UserError(f"{where}: search.samples: the accuracy predictor is fit on at least "
                        f"{MIN_PREDICTOR_ARCHS} subnets, got {p.search.samples}")
    if not 0 < p.epoch_scale <= 1:
        raise UserError(f"{where}: epoch_scale: expected a number in (0, 1], got {p.epoch_scale}")
    if p.cpus_per_worker <= 0 or p.gpus_per_worker < 0:
        raise UserError(f"{where}: cpus_per_worker > 0 and gpus_per_worker >= 0")
    for i, peer in enumerate(p.peers):
        if peer.arch not in PEER_ARCHS:
            raise UserError(f"{where}: peers[{i}].arch: expected one of "
                            f"{', '.join(PEER_ARCHS)}, got {peer.arch!r}")
        if peer.recipe not in p.recipes:
            raise UserError(f"{where}: peers[{i}].recipe: {peer.recipe!r} is not one of the "
                            "study's recipes")
    if len({peer.name for peer in p.peers}) != len(p.peers):
        raise UserError(f"{where}: peers: one peer per arch")
    from ofa_platform.search.strategies import STRATEGIES

    if p.search.strategy not in STRATEGIES:
        raise UserError(f"{where}: search.strategy: {p.search.strategy!r}; known: "
                        f"{', '.join(STRATEGIES)}")
    return p
