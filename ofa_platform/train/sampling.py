"""Which subnets a training step trains, and at which resolution.

Deterministic from ``(seed, global_step)``: every DDP worker calls :func:`sample_step` with
the same arguments and gets the same subnets and resolution without communicating, and a
resumed run repeats the original run's choices. The RNG is a fresh ``random.Random`` seeded
with the string ``"{seed}:{global_step}"`` (string seeds hash with SHA-512, independent of
``PYTHONHASHSEED`` and of the process).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ofa_platform.train.schedule import Phase
from search_spaces.arch import ArchConfig
from search_spaces.space import SearchSpace

__all__ = ["StepSample", "step_rng", "sample_step"]


@dataclass(frozen=True)
class StepSample:
    """The subnets of one step, all at ``resolution``. ``full_model[i]`` marks the largest
    subnet of the phase's space (the in-place teacher; trained without β weighting). In
    ``sandwich`` only the first entry is marked (a random draw that happens to equal the
    largest is still a student), and it comes first so its logits exist before the
    students'; with other rules every draw equal to the largest is marked."""

    resolution: int
    archs: tuple[ArchConfig, ...]
    full_model: tuple[bool, ...]


def step_rng(seed: int, global_step: int) -> random.Random:
    """The RNG of one step, the same in every process."""
    return random.Random(f"{int(seed)}:{int(global_step)}")


def sample_step(phase: Phase, space: SearchSpace, *, seed: int, global_step: int) -> StepSample:
    """Sample the step's resolution (uniform over ``space.resolutions``) and subnets.

    ``space`` is the phase's space (``phase.space(full_space)``, with the dataset's
    resolutions). The phase's sampling rule (``ofa_platform.train.modes.SAMPLING_RULES``)
    draws ``subnets_per_step`` subnets: ``max`` -> the largest subnet only; ``uniform`` /
    ``compound`` -> independent draws with that rule (a compound space couples either way);
    ``sandwich`` -> largest, smallest, then ``subnets_per_step - 2`` uniform draws.
    """
    from ofa_platform.train.modes import get_sampling

    rng = step_rng(seed, global_step)
    r = rng.choice(space.resolutions)
    archs, full = get_sampling(phase.sampling).sample(space, rng, phase.subnets_per_step, r)
    return StepSample(resolution=r, archs=tuple(archs), full_model=tuple(full))
