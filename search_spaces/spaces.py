"""The registered search spaces, as data.

Each entry is a :class:`SearchSpace` value; supernet code never hard-codes a choice list. The
resolutions are ImageNet's; a dataset recipe swaps them with ``with_resolutions`` (CIFAR).
"""

from __future__ import annotations

from search_spaces.resnet_space import ResNetSpace
from search_spaces.space import SearchSpace, StageChoices

__all__ = ["SPACES", "get_space", "list_spaces", "UnknownSpaceError"]

_IMAGENET_RES = tuple(range(128, 225, 4))  # 25 sizes, as OFA trains and searches
_D, _K, _E = (2, 3, 4), (3, 5, 7), (3, 4, 6)


class UnknownSpaceError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; a user should read plain text
        return str(self.args[0])


def _mbv3(kernels_per_stage: tuple[tuple[int, ...], ...]) -> tuple[StageChoices, ...]:
    return tuple(StageChoices(depths=_D, kernels=k, ratios=_E) for k in kernels_per_stage)


def _proxyless(kernels: tuple[int, ...], last_ratios: tuple[int, ...]) -> tuple[StageChoices, ...]:
    elastic = tuple(StageChoices(depths=_D, kernels=kernels, ratios=_E) for _ in range(5))
    return elastic + (StageChoices(depths=(1,), kernels=kernels, ratios=last_ratios),)


SPACES: dict[str, SearchSpace | ResNetSpace] = {
    s.name: s
    for s in (
        SearchSpace(
            name="ofa_mbv3", family="mbv3", stages=_mbv3((_K,) * 5), resolutions=_IMAGENET_RES,
            description="OFA MobileNetV3: elastic kernel, ratio per block, depth per stage"),
        SearchSpace(
            name="compofa_mbv3", family="mbv3",
            stages=_mbv3(((3,), (5,), (3,), (3,), (5,))), resolutions=_IMAGENET_RES,
            compound=True, kernel_transform=False,
            description="CompOFA: depth and ratio coupled per stage, kernels fixed 3,5,3,3,5"),
        SearchSpace(
            name="compofa_mbv3_ek", family="mbv3", stages=_mbv3((_K,) * 5),
            resolutions=_IMAGENET_RES, compound=True, kernel_transform=False,
            description="CompOFA with elastic kernel per block: depth and ratio coupled"),
        SearchSpace(
            name="deps_mbv3", family="mbv3", stages=_mbv3(((7,),) * 5),
            resolutions=_IMAGENET_RES, kernel_transform=False,
            description="DepS: OFA MobileNetV3 with kernel 7, elastic depth and ratio"),
        SearchSpace(
            name="ofa_proxyless", family="proxyless", stages=_proxyless(_K, _E),
            resolutions=_IMAGENET_RES,
            description="OFA ProxylessNAS: five elastic stages plus a one-block last stage"),
        SearchSpace(
            name="compofa_proxyless", family="proxyless", stages=_proxyless((3,), (6,)),
            resolutions=_IMAGENET_RES, compound=True, kernel_transform=False,
            description="CompOFA on ProxylessNAS: kernel 3, depth and ratio coupled; the "
                        "one-block last stage has no depth to couple to and keeps ratio 6"),
        ResNetSpace(
            name="ofa_resnet50", resolutions=_IMAGENET_RES,
            description="OFA ResNet50D: elastic depth per stage (and stem), ratio per block, "
                        "width per stage and stem conv"),
    )
}


def get_space(name: str) -> SearchSpace | ResNetSpace:
    try:
        return SPACES[name]
    except KeyError:
        raise UnknownSpaceError(
            f"unknown space {name!r}; known: {', '.join(sorted(SPACES))}") from None


def list_spaces() -> list[str]:
    return sorted(SPACES)
