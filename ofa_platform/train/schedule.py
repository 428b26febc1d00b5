"""Training schedules as validated data: a recipe is a YAML file in ``jobs/schedules/``.

A :class:`Schedule` is a frozen value parsed from YAML: schedule-level settings (optimizer,
label smoothing, dropout, LR schedule, default space) and an ordered tuple of :class:`Phase`
values. Every phase knows its global start and end epoch, so the engine, the LR and the
ε-ramp functions only ever ask the schedule "where is global epoch / step ``t``?".

Parsing collects *every* problem (unknown keys, wrong types, unknown sampling rules or
distillation modes, empty phase lists, inconsistent fields) and raises one
:class:`~ofa_platform.errors.UserError` whose single line names them all, so a user fixes a
recipe in one round trip.

Epoch accounting (as in OFA's code): a phase runs ``warmup_epochs`` of linear LR warm-up and
then ``epochs`` of cosine decay, so it lasts ``warmup_epochs + epochs`` epochs ("120+5").

YAML layout (all keys optional unless marked)::

    name: ofa                      # optional; must equal the file stem when given
    description: ...
    space: ofa_mbv3                # required: the default search space
    optimizer: {type: sgd, momentum: 0.9, nesterov: true, weight_decay: 3.0e-5,
                no_decay_bn_bias: true}
    label_smoothing: 0.1
    dropout: 0.1
    dropout_full_model_only: false # DεpS: dropout on the full model only
    lr_schedule: per_phase         # or global_cosine (one cosine over all epochs)
    lr_reference_batch: 2048       # phase LRs are stated per this many images of total batch
    resolution_sampling: per_batch # one resolution per step, shared by its subnets
    distillation_weight: 1.0       # teacher mode: CE + weight x soft CE against the teacher
    distillation_temperature: 1.0  # soft-CE temperature (teacher and inplace modes)
    teacher_bn: batch              # frozen teacher's BN: batch (reference) | running
    phases:                        # required, non-empty
      - name: kernel               # required, unique
        space: ofa_mbv3            # train this phase in another space of the same family
        epochs: 120                # required, >= 1 (cosine epochs, after warm-up)
        warmup_epochs: 5
        lr: 0.96                   # required, > 0, per lr_reference_batch images
        subnets_per_step: 1
        sampling: uniform          # a SAMPLING_RULES entry: uniform | compound | sandwich | max
        restrict: {kernels: [3, 5, 7], ratios: [6], depths: [4], compound: false}
                                   # ResNet50D: ratios 0.2/0.25/0.35, depths are its extra
                                   # depths 0/1/2, and widths: [0.65, 0.8, 1.0]
        distillation: teacher      # a DISTILLATION_MODES entry: none | teacher | inplace
        teacher_phase: teacher     # teacher mode: whose final weights teach (default: 1st)
        sort_channels: false       # sort channels by importance when the phase starts
        sort_keep_ratios: [4, 6]   # ...keeping these ratios' channel groups in front (OFA)
        init: previous             # scratch | previous
        beta_ramp_epochs: 0        # DεpS ε-shrinking ramp length (see ofa_platform.train.eps)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ofa_platform.configs import ConfigReader
from ofa_platform.errors import UserError
from ofa_platform.paths import jobs_dir
from ofa_platform.train.modes import (
    DISTILLATION_MODES,
    SAMPLING_RULES,
    get_distillation,
    get_sampling,
)

if TYPE_CHECKING:
    from search_spaces.space import SearchSpace

__all__ = [
    "INIT", "LR_SCHEDULES", "TEACHER_BN",
    "Restriction", "OptimizerSpec", "Phase", "Schedule",
    "default_schedules_dir", "parse_schedule", "load_schedule", "list_schedules",
]

INIT = ("scratch", "previous")
TEACHER_BN = ("batch", "running")
LR_SCHEDULES = ("per_phase", "global_cosine")
RESOLUTION_SAMPLING = ("per_batch",)


def default_schedules_dir() -> Path:
    """``jobs/schedules/`` of this checkout (the package is installed editable)."""
    return jobs_dir("schedules")


# --------------------------------------------------------------------------- values
@dataclass(frozen=True)
class Restriction:
    """The sub-space a phase samples from: ``None`` keeps the space's own choices.

    A stage whose choice is fixed in the space keeps it (see ``SearchSpace.restrict``: the
    one-block last stage of ProxylessNAS under ``depths [4]``), but a restriction that no stage
    of the space can meet is an error, never ignored: ``kernels [7]`` on CompOFA's fixed 3/5
    kernels would otherwise train the K3/5 network and call it the K7 teacher. ``compound``
    couples each stage's ratio to its depth (CompOFA).
    ``widths`` (width multipliers) only applies to spaces with elastic width (ResNet50D).
    """

    kernels: tuple[int, ...] | None = None
    ratios: tuple[float, ...] | None = None
    depths: tuple[int, ...] | None = None
    compound: bool | None = None
    widths: tuple[float, ...] | None = None

    def apply(self, space: SearchSpace) -> SearchSpace:
        """The restricted space; an empty intersection with the space is a ``UserError``, and
        so is a restriction no stage of the space can meet (a space with per-stage choices
        otherwise keeps a stage's fixed choice)."""
        stages = getattr(space, "stages", None)  # ResNet50D's restrict checks its own
        for what, want in (("kernels", self.kernels), ("ratios", self.ratios),
                           ("depths", self.depths)):
            have = {v for st in stages or () for v in getattr(st, what)}
            if stages and want is not None and not set(want) & have:
                raise UserError(f"restriction {what} {list(want)} cannot apply to space "
                                f"{space.name}: its {what} are {sorted(have)}; train the phase "
                                "in a space that has them (phase key space:)")
        extra: dict[str, Any] = {}
        if self.widths is not None:
            if space.family != "resnet":
                raise UserError(f"restrict.widths: space {space.name} has no elastic width")
            extra["widths"] = self.widths
        try:
            return space.restrict(kernels=self.kernels, ratios=self.ratios, depths=self.depths,
                                  compound=self.compound, **extra)
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class OptimizerSpec:
    """SGD settings. ``no_decay_bn_bias`` exempts BatchNorm weights and all biases from weight
    decay (OFA's recipe); the engine builds the two parameter groups."""

    type: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 3e-5
    no_decay_bn_bias: bool = True


@dataclass(frozen=True)
class Phase:
    """One phase of a schedule. ``start_epoch``/``end_epoch`` are global (end exclusive) and
    filled in by :class:`Schedule`; ``lr`` is per ``lr_reference_batch`` images of total
    batch and is scaled linearly with the real batch by ``ofa_platform.train.lr.scale_lr``.

    ``sampling``: ``uniform`` draws every gene uniformly (OFA), ``compound`` couples ratio to
    depth (CompOFA), ``sandwich`` trains the largest, the smallest and ``subnets_per_step - 2``
    random subnets (BigNAS / DεpS), ``max`` trains only the full model (OFA's teacher).

    ``distillation``: ``none`` (label-smoothed CE), ``teacher`` (frozen copy of the full model
    as it was at the end of ``teacher_phase``; loss = label-smoothed CE + weight x soft CE
    against the teacher's softmax), ``inplace`` (subnets learn only from the full model's
    detached logits in the same step; the full model from label-smoothed CE).

    ``beta_ramp_epochs`` > 0 makes this the DεpS ε-shrinking phase: subnet gradients are
    weighted by β, which ramps during the first ``beta_ramp_epochs`` of the phase and is 1
    from ``tw_epoch = start_epoch + beta_ramp_epochs`` on (see ``ofa_platform.train.eps``).

    ``space_name`` (YAML ``space``) trains this phase in another space of the run's family:
    CompOFA's teacher is OFA's K7 network, which its fixed-kernel space cannot express; the
    next phase in the run's space starts from its weights (``search_spaces.transfer``).
    ``sort_keep_ratios``: when sorting, the channel groups of these expand ratios (those the
    previous phase trained) stay in front, each sorted within itself, as OFA's
    ``re_organize_middle_weights(expand_ratio_stage=...)`` keeps them; without it one global
    sort may move a trained ratio-4 channel behind an untrained one.
    """

    name: str
    epochs: int
    lr: float
    warmup_epochs: int = 0
    subnets_per_step: int = 1
    sampling: str = "uniform"
    restrict: Restriction = field(default_factory=Restriction)
    distillation: str = "none"
    teacher_phase: str | None = None
    sort_channels: bool = False
    sort_keep_ratios: tuple[int, ...] | None = None
    init: str = "previous"
    beta_ramp_epochs: int = 0
    space_name: str | None = None
    start_epoch: int = 0
    end_epoch: int = 0

    @property
    def total_epochs(self) -> int:
        """Warm-up plus cosine epochs: the phase's length."""
        return self.warmup_epochs + self.epochs

    @property
    def tw_epoch(self) -> int | None:
        """DεpS's Tw: the global epoch at which β reaches 1 (``None`` without a ramp)."""
        return self.start_epoch + self.beta_ramp_epochs if self.beta_ramp_epochs else None

    def base_space(self, space: SearchSpace) -> SearchSpace:
        """The space whose supernet this phase trains: the run's ``space``, or ``space_name``
        (with the run's resolutions) when the phase names one of the same family and layout.
        """
        if self.space_name is None or self.space_name == space.name:
            return space
        from search_spaces.spaces import UnknownSpaceError, get_space

        try:
            other = get_space(self.space_name)
        except UnknownSpaceError as exc:
            raise UserError(f"phase {self.name}: {exc}") from None
        if other.family != space.family or other.n_slots != space.n_slots:
            raise UserError(f"phase {self.name}: space {other.name} ({other.family}) cannot "
                            f"share weights with the run's space {space.name} ({space.family})")
        return other.with_resolutions(space.resolutions)

    def space(self, space: SearchSpace) -> SearchSpace:
        """The space this phase samples from (its base space, restricted); a restriction that
        cannot apply is a ``UserError`` naming the phase."""
        base = self.base_space(space)
        try:
            return self.restrict.apply(base)
        except UserError as exc:
            raise UserError(f"phase {self.name}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["restrict"] = self.restrict.to_dict()
        d["total_epochs"] = self.total_epochs
        d["sort_keep_ratios"] = (list(self.sort_keep_ratios) if self.sort_keep_ratios
                                 else None)
        return d


@dataclass(frozen=True)
class Schedule:
    """A whole training recipe. Build it with :func:`parse_schedule` / :func:`load_schedule`;
    the constructor only recomputes the phases' global start/end epochs."""

    name: str
    space: str
    phases: tuple[Phase, ...]
    description: str = ""
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    label_smoothing: float = 0.1
    dropout: float = 0.1
    dropout_full_model_only: bool = False
    lr_schedule: str = "per_phase"
    lr_reference_batch: int = 2048
    resolution_sampling: str = "per_batch"
    distillation_weight: float = 1.0
    distillation_temperature: float = 1.0
    teacher_bn: str = "batch"
    epoch_scale: float = 1.0

    def __post_init__(self) -> None:
        placed, start = [], 0
        for p in self.phases:
            placed.append(replace(p, start_epoch=start, end_epoch=start + p.total_epochs))
            start += p.total_epochs
        object.__setattr__(self, "phases", tuple(placed))

    @property
    def total_epochs(self) -> int:
        return sum(p.total_epochs for p in self.phases)

    @property
    def tw_epoch(self) -> int | None:
        """DεpS's Tw of the first ε-shrinking phase, or ``None``."""
        return next((p.tw_epoch for p in self.phases if p.beta_ramp_epochs), None)

    def phase_index_at(self, epoch: int) -> int:
        """Index of the phase that global ``epoch`` (0-based) belongs to."""
        if epoch < 0 or epoch >= self.total_epochs:
            raise ValueError(f"epoch {epoch} outside schedule {self.name} "
                             f"(0..{self.total_epochs - 1})")
        return next(i for i, p in enumerate(self.phases) if epoch < p.end_epoch)

    def phase_at(self, epoch: int) -> Phase:
        return self.phases[self.phase_index_at(epoch)]

    def phase_spaces(self, space: SearchSpace) -> list[SearchSpace]:
        """Every phase's sampled space for a run in ``space``: what actually runs. A phase
        whose restriction or space cannot apply is a ``UserError`` (at ``schedules``/``train``
        time, before anything starts)."""
        spaces = [p.space(space) for p in self.phases]
        for p, ps in zip(self.phases, spaces):
            ratios = ({e for st in ps.stages for e in st.ratios} if hasattr(ps, "stages")
                      else set(getattr(ps, "ratios", ())))
            if p.sort_keep_ratios and not set(p.sort_keep_ratios) <= ratios:
                raise UserError(f"phase {p.name}: sort_keep_ratios {list(p.sort_keep_ratios)} "
                                f"are not ratios the phase trains")
        return spaces

    def teacher_of(self, phase: Phase) -> str | None:
        """The phase whose final weights teach ``phase`` (frozen-teacher modes), else None."""
        if not get_distillation(phase.distillation).frozen_teacher:
            return None
        return phase.teacher_phase or self.phases[0].name

    def phase_index(self, name: str) -> int:
        """Index of the phase called ``name`` (``KeyError`` when there is none)."""
        for i, p in enumerate(self.phases):
            if p.name == name:
                return i
        raise KeyError(name)

    def phase(self, name: str) -> Phase:
        for p in self.phases:
            if p.name == name:
                return p
        raise KeyError(name)

    def scaled(self, epoch_scale: float) -> Schedule:
        """The same recipe with each phase's epochs multiplied by ``epoch_scale`` (smoke runs).

        Each phase keeps ``max(1, round(epochs * f))`` cosine epochs; warm-up becomes
        ``round(warmup_epochs * f)`` (it may vanish at tiny scales); a β ramp keeps at least
        one epoch and never exceeds the scaled phase. Everything else (LRs, sampling,
        distillation, sorting, init) is unchanged. How many *steps* an epoch has is the
        engine's business: with a data subset an epoch still has at least one step, so
        every phase of a scaled schedule runs. ``epoch_scale`` is kept for provenance.
        """
        if not (isinstance(epoch_scale, (int, float)) and 0 < epoch_scale <= 1):
            raise UserError(f"epoch scale {epoch_scale!r}: expected a number in (0, 1]")
        if epoch_scale == 1:
            return self
        phases = []
        for p in self.phases:
            epochs = max(1, round(p.epochs * epoch_scale))
            warmup = round(p.warmup_epochs * epoch_scale)
            ramp = (min(max(1, round(p.beta_ramp_epochs * epoch_scale)), epochs + warmup)
                    if p.beta_ramp_epochs else 0)
            phases.append(replace(p, epochs=epochs, warmup_epochs=warmup, beta_ramp_epochs=ramp))
        return replace(self, phases=tuple(phases), epoch_scale=self.epoch_scale * epoch_scale)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``ofa-platform schedules NAME --json``, MLflow params)."""
        d = asdict(self)
        d["phases"] = [p.to_dict() for p in self.phases]
        d["total_epochs"] = self.total_epochs
        d["tw_epoch"] = self.tw_epoch
        return d


# --------------------------------------------------------------------------- parsing
_TOP_KEYS = {"name", "description", "space", "optimizer", "label_smoothing", "dropout",
             "dropout_full_model_only", "lr_schedule", "lr_reference_batch",
             "resolution_sampling", "distillation_weight", "distillation_temperature",
             "teacher_bn", "phases"}
_OPT_KEYS = {"type", "momentum", "nesterov", "weight_decay", "no_decay_bn_bias"}
_PHASE_KEYS = {"name", "epochs", "warmup_epochs", "lr", "subnets_per_step", "sampling",
               "restrict", "distillation", "teacher_phase", "sort_channels", "init",
               "beta_ramp_epochs", "space", "sort_keep_ratios"}
_RESTRICT_KEYS = {"kernels", "ratios", "depths", "compound", "widths"}


def _parse_phase(r: ConfigReader, data: Any, i: int, default_init: str) -> Phase | None:
    where = f"phases[{i}]."
    if not isinstance(data, dict):
        r.errors.append(f"phases[{i}]: expected a mapping, got {data!r}")
        return None
    r.unknown(data, _PHASE_KEYS, where)
    rd = r.mapping(data, "restrict", where)
    r.unknown(rd, _RESTRICT_KEYS, f"{where}restrict.")
    restriction = Restriction(
        kernels=r.int_list(rd, "kernels", f"{where}restrict."),
        ratios=r.number_list(rd, "ratios", f"{where}restrict."),
        depths=r.int_list(rd, "depths", f"{where}restrict.", minimum=0),  # ResNet50D: 0 extra
        compound=r.get(rd, "compound", "bool", f"{where}restrict."),
        widths=r.number_list(rd, "widths", f"{where}restrict."),
    )
    name = r.get(data, "name", "str", where, required=True)
    epochs = r.get(data, "epochs", "int", where, required=True, positive=True)
    lr = r.get(data, "lr", "float", where, required=True, positive=True)
    if name is None or epochs is None or lr is None:
        name, epochs, lr = name or f"phase{i}", epochs or 1, lr or 1.0
    return Phase(
        name=name, epochs=epochs, lr=lr,
        warmup_epochs=r.get(data, "warmup_epochs", "int", where, 0, minimum=0),
        subnets_per_step=r.get(data, "subnets_per_step", "int", where, 1, positive=True),
        sampling=r.get(data, "sampling", "str", where, "uniform",
                       choices=tuple(SAMPLING_RULES)),
        restrict=restriction,
        distillation=r.get(data, "distillation", "str", where, "none",
                           choices=tuple(DISTILLATION_MODES)),
        teacher_phase=r.get(data, "teacher_phase", "str", where),
        sort_channels=r.get(data, "sort_channels", "bool", where, False),
        sort_keep_ratios=r.int_list(data, "sort_keep_ratios", where),
        init=r.get(data, "init", "str", where, default_init, choices=INIT),
        beta_ramp_epochs=r.get(data, "beta_ramp_epochs", "int", where, 0, minimum=0),
        space_name=r.get(data, "space", "str", where),
    )


def _check_phases(r: ConfigReader, phases: list[Phase], lr_schedule: str) -> None:
    """Cross-field rules: they name the phase, so the user knows where to look."""
    seen: set[str] = set()
    for i, p in enumerate(phases):
        where = f"phases[{i}] ({p.name})"
        rule, mode = get_sampling(p.sampling), get_distillation(p.distillation)
        if p.name in seen:
            r.errors.append(f"{where}: duplicate phase name")
        if rule.max_subnets is not None and p.subnets_per_step > rule.max_subnets:
            r.errors.append(f"{where}: sampling {rule.name} trains at most {rule.max_subnets} "
                            f"subnet(s); subnets_per_step must be 1, got {p.subnets_per_step}")
        if p.subnets_per_step < rule.min_subnets:
            r.errors.append(f"{where}: {rule.name} needs subnets_per_step >= "
                            f"{rule.min_subnets} ({rule.description})")
        if mode.full_model_teaches and not (rule.full_model_first and rule.max_subnets != 1):
            good = [n for n, x in SAMPLING_RULES.items()
                    if x.full_model_first and x.max_subnets != 1]
            r.errors.append(f"{where}: {mode.name} distillation needs sampling "
                            f"{' or '.join(good)} (the full model must be trained in every "
                            "step)")
        if p.sort_keep_ratios and not p.sort_channels:
            r.errors.append(f"{where}: sort_keep_ratios needs sort_channels true")
        if mode.frozen_teacher:
            teacher = p.teacher_phase or (phases[0].name if i else None)
            if teacher is None or teacher not in seen:
                r.errors.append(f"{where}: {mode.name} distillation needs an earlier "
                                f"teacher_phase{'' if teacher is None else f' (got {teacher!r})'}")
        elif p.teacher_phase is not None:
            r.errors.append(f"{where}: teacher_phase is only meaningful with a frozen-teacher "
                            "distillation mode")
        if i == 0 and p.init == "previous":
            r.errors.append(f"{where}: the first phase has no previous phase; use init scratch")
        if p.beta_ramp_epochs > p.total_epochs:
            r.errors.append(f"{where}: beta_ramp_epochs {p.beta_ramp_epochs} exceeds the "
                            f"phase's {p.total_epochs} epochs")
        if p.beta_ramp_epochs and p.sampling == "max":
            r.errors.append(f"{where}: a beta ramp weights subnet gradients; sampling max has "
                            "no subnets")
        if lr_schedule == "global_cosine" and i:
            if p.lr != phases[0].lr:
                r.errors.append(f"{where}: lr_schedule global_cosine needs the same lr in "
                                f"every phase ({p.lr} != {phases[0].lr})")
            if p.warmup_epochs:
                r.errors.append(f"{where}: lr_schedule global_cosine warms up in the first "
                                "phase only; warmup_epochs must be 0")
        seen.add(p.name)
    if sum(1 for p in phases if p.beta_ramp_epochs) > 1:
        r.errors.append("phases: at most one phase may have a beta ramp (one Tw)")


def parse_schedule(data: Any, *, name: str | None = None, source: str = "schedule") -> Schedule:
    """Validate a YAML-loaded mapping into a :class:`Schedule`.

    ``name`` (usually the file stem) is used when the mapping has none. Raises ``UserError``
    naming every wrong field, prefixed with ``source``.
    """
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping at the top level, got "
                        f"{type(data).__name__}")
    r = ConfigReader()
    r.unknown(data, _TOP_KEYS, "")
    optimizer = _parse_optimizer(r, data)
    lr_schedule = r.get(data, "lr_schedule", "str", "", "per_phase", choices=LR_SCHEDULES)
    phases = _parse_phases(r, data.get("phases"), lr_schedule)
    kw = dict(
        name=r.get(data, "name", "str", "", name or "schedule"),
        space=r.get(data, "space", "str", "", required=True) or "",
        description=r.get(data, "description", "str", "", ""),
        optimizer=optimizer,
        label_smoothing=r.get(data, "label_smoothing", "float", "", 0.1, minimum=0.0),
        dropout=r.get(data, "dropout", "float", "", 0.1, minimum=0.0),
        dropout_full_model_only=r.get(data, "dropout_full_model_only", "bool", "", False),
        lr_schedule=lr_schedule,
        lr_reference_batch=r.get(data, "lr_reference_batch", "int", "", 2048, positive=True),
        resolution_sampling=r.get(data, "resolution_sampling", "str", "", "per_batch",
                                  choices=RESOLUTION_SAMPLING),
        distillation_weight=r.get(data, "distillation_weight", "float", "", 1.0, minimum=0.0),
        distillation_temperature=r.get(data, "distillation_temperature", "float", "", 1.0,
                                       positive=True),
        teacher_bn=r.get(data, "teacher_bn", "str", "", "batch", choices=TEACHER_BN),
    )
    for key in ("label_smoothing", "dropout"):
        if kw[key] >= 1:
            r.errors.append(f"{key}: must be < 1, got {kw[key]}")
    if r.errors:
        raise UserError(f"{source}: " + "; ".join(r.errors))
    return Schedule(phases=tuple(phases), **kw)


def _parse_optimizer(r: ConfigReader, data: dict[str, Any]) -> OptimizerSpec:
    """The ``optimizer`` mapping; OFA's SGD settings where a key is left out."""
    od = r.mapping(data, "optimizer", "")
    r.unknown(od, _OPT_KEYS, "optimizer.")
    return OptimizerSpec(
        type=r.get(od, "type", "str", "optimizer.", "sgd", choices=("sgd",)),
        momentum=r.get(od, "momentum", "float", "optimizer.", 0.9, minimum=0.0),
        nesterov=r.get(od, "nesterov", "bool", "optimizer.", True),
        weight_decay=r.get(od, "weight_decay", "float", "optimizer.", 3e-5, minimum=0.0),
        no_decay_bn_bias=r.get(od, "no_decay_bn_bias", "bool", "optimizer.", True),
    )


def _parse_phases(r: ConfigReader, raw_phases: Any, lr_schedule: str) -> list[Phase]:
    """Every phase (errors collected on ``r``); checked together once each one parsed."""
    phases: list[Phase] = []
    if not isinstance(raw_phases, list) or not raw_phases:
        r.errors.append("phases: expected a non-empty list of phases")
        return phases
    for i, pd in enumerate(raw_phases):
        phase = _parse_phase(r, pd, i, "scratch" if i == 0 else "previous")
        if phase is not None:
            phases.append(phase)
    if len(phases) == len(raw_phases):
        _check_phases(r, phases, lr_schedule)
    return phases


def list_schedules(schedules_dir: str | Path | None = None) -> list[str]:
    """Names (file stems) of the recipes in ``schedules_dir`` (default: ``jobs/schedules``)."""
    d = Path(schedules_dir) if schedules_dir is not None else default_schedules_dir()
    if not d.is_dir():
        return []
    return sorted({p.stem for p in d.iterdir() if p.suffix in (".yaml", ".yml")})


def load_schedule(name_or_path: str | Path, schedules_dir: str | Path | None = None) -> Schedule:
    """A recipe by name (a file in ``schedules_dir``) or by path to a YAML file.

    Unknown names, unreadable files, invalid YAML and invalid recipes are ``UserError``.
    """
    import yaml

    d = Path(schedules_dir) if schedules_dir is not None else default_schedules_dir()
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = next((d / f"{text}{ext}" for ext in (".yaml", ".yml")
                     if (d / f"{text}{ext}").is_file()), d / f"{text}.yaml")
        if not path.is_file():
            known = ", ".join(list_schedules(d)) or "none"
            raise UserError(f"unknown schedule {text!r}; known: {known}")
    from ofa_platform.files import read_user_text

    raw = read_user_text(path, "schedule")  # binary or non-UTF-8: one line, not a traceback
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise UserError(f"schedule {path}: invalid YAML{at}: {problem}") from None
    if isinstance(data, dict) and isinstance(data.get("name"), str) and data["name"] != path.stem:
        raise UserError(f"schedule {path}: name {data['name']!r} differs from the file name "
                        f"{path.stem!r}; a recipe is known by its file name")
    return parse_schedule(data, name=path.stem, source=f"schedule {path}")
