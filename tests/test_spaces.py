"""Search spaces: exact cardinalities, sampling, enumeration, validation, OFA dict form."""

from __future__ import annotations

import json
import random

import pytest

from ofa_platform.cli import main
from search_spaces.arch import ArchConfig, ArchError
from search_spaces.spaces import SPACES, get_space


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ofa_mbv3", 7371**5),
        ("compofa_mbv3", 243),
        ("compofa_mbv3_ek", 117**5),
        ("deps_mbv3", 117**5),
        ("ofa_proxyless", 7371**5 * 9),
        ("compofa_proxyless", 243),
    ],
)
def test_cardinality(name: str, expected: int) -> None:
    space = get_space(name)
    assert space.cardinality() == expected
    assert space.cardinality(with_resolution=True) == expected * len(space.resolutions)


def test_published_numbers() -> None:
    assert get_space("ofa_mbv3").cardinality() == 21_758_655_492_572_485_851
    assert get_space("compofa_mbv3_ek").cardinality() == 21_924_480_357
    assert get_space("ofa_mbv3").resolutions == tuple(range(128, 225, 4))


@pytest.mark.parametrize("name", sorted(SPACES))
def test_samples_belong_and_roundtrip(name: str) -> None:
    space = get_space(name)
    rng = random.Random(0)
    for rule in ("uniform", "min", "max"):
        for _ in range(20):
            arch = space.sample(rng, rule)
            assert space.contains(arch), space.errors(arch)
            assert type(arch).from_json(arch.to_json()) == arch  # ArchConfig or ResNetArch
            assert space.parse_arch(space.to_ofa_dict(arch)) == arch
            assert space.parse_arch(json.dumps(space.to_ofa_dict(arch))) == arch


def test_sampling_is_seeded() -> None:
    space = get_space("ofa_mbv3")
    a = [space.sample(random.Random(7)) for _ in range(5)]
    b = [space.sample(random.Random(7)) for _ in range(5)]
    assert a == b
    assert len({space.sample(random.Random(i)) for i in range(50)}) == 50


def test_compound_sampling_couples_ratio_to_depth() -> None:
    space = get_space("ofa_mbv3")
    rng = random.Random(1)
    for _ in range(50):
        arch = space.sample(rng, "compound")
        for ks, es in zip(arch.ks, arch.e):
            assert set(es) == {{2: 3, 3: 4, 4: 6}[len(ks)]}
        assert get_space("compofa_mbv3_ek").contains(arch)


def test_enumeration_matches_cardinality() -> None:
    space = get_space("compofa_mbv3")
    archs = list(space.enumerate(with_resolution=False))
    assert len(archs) == len(set(archs)) == 243
    assert all(space.contains(a) for a in archs)
    with pytest.raises(ValueError, match="too many"):
        next(get_space("ofa_mbv3").enumerate())


def test_min_max() -> None:
    space = get_space("ofa_mbv3")
    big, small = space.largest(), space.smallest()
    assert big.d == (4,) * 5 and set(sum(big.ks, ())) == {7} and big.r == 224
    assert small.d == (2,) * 5 and set(sum(small.e, ())) == {3} and small.r == 128
    compound_small = get_space("compofa_mbv3").smallest()
    assert compound_small.e[0] == (3, 3)


def test_invalid_ofa_dict_names_every_field() -> None:
    space = get_space("ofa_mbv3")
    bad = {"ks": [4] + [3] * 19, "e": [3] * 19, "d": [5, 2, 2, 2, 2], "r": 224}
    with pytest.raises(ArchError) as err:
        space.parse_arch(bad)
    msg = str(err.value)
    assert "ks" in msg and "e:" in msg and "d[0]=5" in msg


def test_coupled_space_rejects_uncoupled_values() -> None:
    space = get_space("compofa_mbv3")
    arch = ArchConfig(ks=((3, 3),) + space.largest().ks[1:], e=((6, 6),) + space.largest().e[1:],
                      r=224)
    with pytest.raises(ArchError, match="compound"):
        space.validate(arch)


def test_image_size_and_list_resolution_accepted() -> None:
    space = get_space("ofa_mbv3")
    d = space.to_ofa_dict(space.largest())
    d.pop("r")
    assert space.parse_arch({**d, "image_size": 192}).r == 192
    assert space.parse_arch({**d, "r": [160]}).r == 160


def test_restrict_for_a_phase() -> None:
    space = get_space("ofa_mbv3").restrict(kernels=[7], ratios=[6], depths=[3, 4])
    assert space.cardinality() == 2**5
    assert get_space("ofa_proxyless").restrict(depths=[4]).stages[-1].depths == (1,)
    with pytest.raises(ValueError, match="no kernel"):
        get_space("ofa_mbv3").restrict(kernels=[4])
    assert get_space("deps_mbv3").restrict(kernels=[3, 5, 7]).stages[0].kernels == (7,)


def test_cli_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spaces", "--json"]) == 0
    data = {s["name"]: s for s in json.loads(capsys.readouterr().out)}
    assert data["compofa_mbv3"]["cardinality"] == 243
    assert main(["spaces", "nope"]) == 2
    assert "unknown space" in capsys.readouterr().err
