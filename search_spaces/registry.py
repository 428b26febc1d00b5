"""``create_supernet``: the one way to build a supernet for a space.

A space is given by name, as a :class:`SearchSpace` value (e.g. a restricted one for a
training phase) or as the dict form stored in a checkpoint spec. The supernet's ``spec``
records a registered space by name and any other space in full, so a checkpoint always
rebuilds the same shapes.
"""

from __future__ import annotations

from typing import Any

from search_spaces.resnet_space import ResNetSpace
from search_spaces.space import SearchSpace, StageChoices
from search_spaces.spaces import SPACES, get_space
from search_spaces.supernet import Supernet

__all__ = ["create_supernet", "space_to_spec", "space_from_spec"]


def space_to_spec(space: SearchSpace | ResNetSpace) -> str | dict[str, Any]:
    """The registered name when ``space`` is a registered space unchanged, else its fields."""
    if SPACES.get(space.name) == space:
        return space.name
    if isinstance(space, ResNetSpace):
        return space.to_spec()
    return {
        "name": space.name, "family": space.family, "compound": space.compound,
        "kernel_transform": space.kernel_transform, "description": space.description,
        "resolutions": list(space.resolutions),
        "stages": [{"depths": list(s.depths), "kernels": list(s.kernels),
                    "ratios": list(s.ratios)} for s in space.stages],
    }


def space_from_spec(spec: str | dict[str, Any] | SearchSpace | ResNetSpace
                    ) -> SearchSpace | ResNetSpace:
    """Inverse of :func:`space_to_spec` (a name goes through the registry)."""
    if isinstance(spec, (SearchSpace, ResNetSpace)):
        return spec
    if isinstance(spec, str):
        return get_space(spec)
    try:
        if isinstance(spec, dict) and spec.get("family") == "resnet":
            return ResNetSpace.from_spec(spec)
        return SearchSpace(
            name=spec["name"], family=spec["family"], compound=bool(spec["compound"]),
            kernel_transform=bool(spec["kernel_transform"]),
            description=spec.get("description", ""), resolutions=tuple(spec["resolutions"]),
            stages=tuple(StageChoices(depths=tuple(s["depths"]), kernels=tuple(s["kernels"]),
                                      ratios=tuple(s["ratios"])) for s in spec["stages"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"space spec is malformed ({exc})") from None


def create_supernet(space: str | SearchSpace | ResNetSpace | dict[str, Any], *,
                    width_mult: float = 1.0, n_classes: int = 1000, small_input: bool = False,
                    dropout: float = 0.1) -> Supernet:
    """Build the supernet of ``space``'s family at ``width_mult`` with fresh OFA-style init."""
    from search_spaces.mobilenet_v3 import _create_mobilenet_v3
    from search_spaces.proxyless import _create_proxyless
    from search_spaces.resnet import _create_resnet

    sp = space_from_spec(space)
    if not width_mult > 0:
        raise ValueError(f"width_mult must be positive, got {width_mult}")
    if int(n_classes) != n_classes or n_classes < 1:
        raise ValueError(f"n_classes must be a positive integer, got {n_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    builders = {"mbv3": _create_mobilenet_v3, "proxyless": _create_proxyless,
                "resnet": _create_resnet}
    if sp.family not in builders:
        raise ValueError(f"space {sp.name}: no supernet for family {sp.family!r}")
    spec = {"space": space_to_spec(sp), "width_mult": float(width_mult),
            "n_classes": int(n_classes), "small_input": bool(small_input),
            "dropout": float(dropout)}
    return builders[sp.family](sp, width_mult=float(width_mult), n_classes=int(n_classes),
                               small_input=bool(small_input), dropout=float(dropout), spec=spec)
