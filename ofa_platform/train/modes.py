"""Distillation modes and sampling rules as registries: one entry per mode.

Schedule validation, the losses and the engine all ask these registries what a mode means
(``get_distillation``, ``get_sampling``, as timm's ``get_act_layer`` answers for activations),
so a new mode is one entry here and nothing else changes: its name becomes a valid YAML value,
its constraints are checked when a recipe is parsed, and the engine runs it.

Pure Python apart from the loss functions (which take tensors): the sampling rules draw from a
passed-in ``random.Random`` so that every DDP worker draws the same subnets.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from search_spaces.arch import ArchConfig
    from search_spaces.space import SearchSpace

__all__ = ["DistillationMode", "SamplingRule", "DISTILLATION_MODES", "SAMPLING_RULES",
           "get_distillation", "get_sampling", "register_distillation", "register_sampling"]

LossFn = Callable[..., "torch.Tensor"]
SampleFn = Callable[["SearchSpace", random.Random, int, int],
                    "tuple[list[ArchConfig], list[bool]]"]


@dataclass(frozen=True)
class DistillationMode:
    """What a ``distillation:`` value means.

    ``loss(logits, targets, *, smoothing, soft_targets, weight, temperature, is_full_model)``
    is one subnet's loss. ``frozen_teacher``: the engine builds a frozen copy of an earlier
    phase's full model and passes its logits as ``soft_targets``. ``full_model_teaches``: the
    step's full model (trained first) supplies the other subnets' ``soft_targets`` in the same
    step, so the sampling rule must put the full model first.
    """

    name: str
    loss: LossFn
    frozen_teacher: bool = False
    full_model_teaches: bool = False
    description: str = ""


@dataclass(frozen=True)
class SamplingRule:
    """What a ``sampling:`` value means.

    ``sample(space, rng, n, resolution)`` returns the step's subnets and which of them is the
    full model (trained without β weighting). ``min_subnets``/``max_subnets`` bound
    ``subnets_per_step``; ``full_model_first`` says the first subnet is always the full model
    (what in-place distillation needs).
    """

    name: str
    sample: SampleFn
    min_subnets: int = 1
    max_subnets: int | None = None
    full_model_first: bool = False
    description: str = ""


# --------------------------------------------------------------------------- losses
def _loss_none(logits: torch.Tensor, targets: torch.Tensor, *, smoothing: float,
               **_: object) -> torch.Tensor:
    from ofa_platform.train.losses import label_smoothed_ce

    return label_smoothed_ce(logits, targets, smoothing)


def _loss_teacher(logits: torch.Tensor, targets: torch.Tensor, *, smoothing: float,
                  soft_targets: torch.Tensor | None, weight: float, temperature: float,
                  **_: object) -> torch.Tensor:
    from ofa_platform.train.losses import label_smoothed_ce, soft_ce

    if soft_targets is None:
        raise ValueError("distillation 'teacher' needs the teacher's logits")
    return (label_smoothed_ce(logits, targets, smoothing)
            + weight * soft_ce(logits, soft_targets, temperature))


def _loss_inplace(logits: torch.Tensor, targets: torch.Tensor, *, smoothing: float,
                  soft_targets: torch.Tensor | None, temperature: float,
                  is_full_model: bool, **_: object) -> torch.Tensor:
    from ofa_platform.train.losses import label_smoothed_ce, soft_ce

    if is_full_model:
        return label_smoothed_ce(logits, targets, smoothing)
    if soft_targets is None:
        raise ValueError("distillation 'inplace' needs the full model's logits")
    return soft_ce(logits, soft_targets, temperature)


# --------------------------------------------------------------------------- sampling
def _with_r(archs: list[ArchConfig], r: int) -> list[ArchConfig]:
    return [a.replace(r=r) for a in archs]


def _sample_max(space: SearchSpace, rng: random.Random, n: int,
                r: int) -> tuple[list[ArchConfig], list[bool]]:
    return [space.largest(r)], [True]


def _sample_draws(rule: str) -> SampleFn:
    def sample(space: SearchSpace, rng: random.Random, n: int,
               r: int) -> tuple[list[ArchConfig], list[bool]]:
        largest = space.largest(r)
        archs = _with_r([space.sample(rng, rule) for _ in range(n)], r)
        return archs, [a == largest for a in archs]  # a draw of the largest is the full model
    return sample


def _sample_sandwich(space: SearchSpace, rng: random.Random, n: int,
                     r: int) -> tuple[list[ArchConfig], list[bool]]:
    archs = [space.largest(r), space.smallest(r)]
    archs += _with_r([space.sample(rng, "uniform") for _ in range(n - 2)], r)
    # only the first is the teacher, even if a random draw repeats it
    return archs, [i == 0 for i in range(len(archs))]


# --------------------------------------------------------------------------- registries
DISTILLATION_MODES: dict[str, DistillationMode] = {}
SAMPLING_RULES: dict[str, SamplingRule] = {}


def _add(table: dict[str, Any], kind: str, entry: Any) -> Any:
    if entry.name in table:
        raise ValueError(f"{kind} {entry.name!r} is already registered")
    table[entry.name] = entry
    return entry


def _get(table: dict[str, Any], kind: str, name: str) -> Any:
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(table)}") from None


def register_distillation(mode: DistillationMode) -> DistillationMode:
    """Add a mode (a recipe may then name it); a name is registered once."""
    return _add(DISTILLATION_MODES, "distillation mode", mode)


def register_sampling(rule: SamplingRule) -> SamplingRule:
    """Add a sampling rule (a recipe may then name it); a name is registered once."""
    return _add(SAMPLING_RULES, "sampling rule", rule)


def get_distillation(name: str) -> DistillationMode:
    """The registered mode ``name``; unknown names are a ``ValueError`` listing the known."""
    return _get(DISTILLATION_MODES, "distillation mode", name)


def get_sampling(name: str) -> SamplingRule:
    """The registered rule ``name``; unknown names are a ``ValueError`` listing the known."""
    return _get(SAMPLING_RULES, "sampling rule", name)


register_distillation(DistillationMode(
    "none", _loss_none, description="label-smoothed cross-entropy"))
register_distillation(DistillationMode(
    "teacher", _loss_teacher, frozen_teacher=True,
    description="CE + weight x soft CE against a frozen earlier phase's full model (OFA)"))
register_distillation(DistillationMode(
    "inplace", _loss_inplace, full_model_teaches=True,
    description="subnets learn from the step's full model only (BigNAS, DεpS's IKD)"))
register_sampling(SamplingRule(
    "uniform", _sample_draws("uniform"), description="every gene uniformly (OFA)"))
register_sampling(SamplingRule(
    "compound", _sample_draws("compound"), description="ratio coupled to depth (CompOFA)"))
register_sampling(SamplingRule(
    "sandwich", _sample_sandwich, min_subnets=2, full_model_first=True,
    description="largest, smallest, then random subnets (BigNAS, DεpS)"))
register_sampling(SamplingRule(
    "max", _sample_max, max_subnets=1, full_model_first=True,
    description="the full model only (OFA's teacher)"))
