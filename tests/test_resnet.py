"""ResNet50D: the space as data, its arch value, MACs/params anchors, the supernet, checkpoints.

Equality with the reference ``OFAResNets`` lives in ``test_resnet_reference.py`` (skipped
when the reference cannot be installed); this file needs only our code.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import pytest
import torch

from ofa_platform.cli import main
from ofa_platform.errors import UserError
from search_spaces.arch import ArchError, arch_from_dict
from search_spaces.blueprint import network_plan
from search_spaces.checkpoints import (
    load_any_checkpoint,
    load_ofa_checkpoint,
    ofa_state_dict,
    save_ofa_checkpoint,
    save_supernet,
)
from search_spaces.flops import count_macs_params
from search_spaces.registry import create_supernet
from search_spaces.resnet_arch import ResNetArch
from search_spaces.spaces import get_space

SPACE = get_space("ofa_resnet50")


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(0)
    n = create_supernet("ofa_resnet50", n_classes=10, dropout=0.0)
    with torch.no_grad():  # non-trivial BN statistics, so eval mode tests more than weights
        for m in n.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return n.eval()


# ----------------------------------------------------------------------- the space as data
def _independent_cardinality(resolutions: int) -> int:
    """Count by enumerating every stage's (depth, ratio pattern) options and every width /
    stem tuple: a different route from ResNetSpace.cardinality's closed form."""
    per_stage = []
    for base in (2, 2, 4, 2):
        n = sum(1 for d in (0, 1, 2) for _ in itertools.product((0.2, 0.25, 0.35),
                                                                repeat=base + d))
        per_stage.append(n)
    widths = sum(1 for _ in itertools.product(range(3), repeat=6))
    stems = len((0, 2))
    return math.prod(per_stage) * widths * stems * resolutions


def test_cardinality_matches_an_independent_count() -> None:
    assert SPACE.cardinality() == _independent_cardinality(1) == 2_458_914_796_962
    assert SPACE.cardinality(True) == _independent_cardinality(25)
    assert len(SPACE.resolutions) == 25 and SPACE.resolutions[0] == 128


def test_spaces_cli_prints_both_cardinalities(capsys) -> None:  # noqa: ANN001
    assert main(["spaces", "ofa_resnet50"]) == 0
    out = capsys.readouterr().out
    assert f"{SPACE.cardinality():,}" in out and f"{SPACE.cardinality(True):,}" in out
    assert "stage 3" in out and "stem" in out
    assert main(["spaces", "ofa_resnet50", "--json"]) == 0
    [info] = json.loads(capsys.readouterr().out)
    assert info["family"] == "resnet"
    assert info["cardinality_with_resolution"] == SPACE.cardinality(True)


def test_arch_json_round_trip_and_ofa_dict() -> None:
    rng = random.Random(3)
    for _ in range(20):
        arch = SPACE.sample(rng)
        assert SPACE.contains(arch)
        assert ResNetArch.from_json(arch.to_json()) == arch
        assert arch_from_dict(arch.to_dict()) == arch
        ofa = SPACE.to_ofa_dict(arch)
        assert len(ofa["e"]) == 18 and len(ofa["d"]) == 5 and len(ofa["w"]) == 6
        assert SPACE.parse_arch(json.dumps(ofa)) == arch
        assert SPACE.parse_arch(arch.to_json()) == arch
    # OFA's own sampler form: ratios of skipped slots are whatever was drawn; r as image_size
    ofa = {"d": [0, 0, 0, 0, 0], "e": [0.35] * 18, "w": [0, 0, 0, 0, 0, 0], "image_size": 128}
    arch = SPACE.parse_arch(ofa)
    assert arch.stage_blocks == (2, 2, 4, 2) and arch.stem_skipped


def test_bad_arch_names_every_field() -> None:
    ofa = {"d": [1, 3, 0, 0, 0], "e": [0.3] * 18, "w": [0, 5, 0, 0, 0, 0], "r": 100}
    ofa["e"][0] = 0.2
    with pytest.raises(ArchError) as err:
        SPACE.parse_arch(ofa)
    msg = str(err.value)
    assert "d[1]=3" in msg
    ofa["d"] = [1, 0, 0, 0, 0]
    with pytest.raises(ArchError) as err:
        SPACE.parse_arch(ofa)
    msg = str(err.value)
    for part in ("d[0]=1", "[0.3]", "w[1]=5", "r=100"):
        assert part in msg, (part, msg)
    with pytest.raises(ArchError, match="MobileNetV3"):
        SPACE.parse_arch({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 128})


def test_restrict_narrows_choices_not_the_network() -> None:
    teacher = SPACE.restrict(depths=[2], ratios=[0.35], widths=[1.0])
    assert teacher.cardinality() == 1 and teacher.largest() == SPACE.largest()
    depth = SPACE.restrict(depths=[0, 1, 2], ratios=[0.35], widths=[1.0])
    assert depth.stem_depths == (0, 2) and depth.n_slots == SPACE.n_slots
    with pytest.raises(ValueError, match="no width"):
        SPACE.restrict(widths=[0.5])
    with pytest.raises(ValueError, match="kernel is 3"):
        SPACE.restrict(kernels=[5])


# ------------------------------------------------------------------------ MACs / params
def test_macs_params_anchors(net) -> None:  # noqa: ANN001
    plan = network_plan("resnet")
    big = create_supernet("ofa_resnet50")  # 1000 classes, as the anchors
    assert sum(p.numel() for p in big.parameters()) == 48_105_992
    # OFA's counter gives 7,491,642,368 for the largest: it adds per-layer counts in float32;
    # the exact integer sum of the same layers is ours (see README).
    assert count_macs_params(plan, SPACE.largest(224)) == (7_491_643_904, 48_105_992)
    assert count_macs_params(plan, SPACE.smallest(128)) == (315_079_552, 6_539_280)
    sub = big.extract(SPACE.smallest(128))
    assert sum(p.numel() for p in sub.parameters()) == 6_539_280
    # the walk agrees with the extracted module's parameters for random archs too
    rng = random.Random(1)
    plan10 = net.plan
    for _ in range(3):
        arch = SPACE.sample(rng)
        assert count_macs_params(plan10, arch)[1] == sum(
            p.numel() for p in net.extract(arch).parameters())


# --------------------------------------------------------------------------- supernet
def test_extracted_subnet_equals_supernet(net) -> None:  # noqa: ANN001
    rng = random.Random(0)
    x = torch.randn(2, 3, 128, 128)
    for _ in range(4):
        arch = SPACE.sample(rng).replace(r=128)
        net.set_active(arch)
        with torch.no_grad():
            torch.testing.assert_close(net.extract(arch)(x), net(x), rtol=0, atol=0)
    net.set_active(SPACE.largest())


def test_sort_channels_keeps_the_full_network(net) -> None:  # noqa: ANN001
    x = torch.randn(1, 3, 128, 128)
    arch = SPACE.largest(128)
    net.set_active(arch)
    with torch.no_grad():
        before = net(x)
        net.sort_channels()
        torch.testing.assert_close(net(x), before, rtol=1e-4, atol=1e-5)


def test_small_input_variant_keeps_32px_maps() -> None:
    net = create_supernet(SPACE.with_resolutions((32,)), n_classes=10, small_input=True).eval()
    arch = net.space.smallest(32)
    net.set_active(arch)
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    macs, _ = count_macs_params(net.plan, arch)
    assert macs > count_macs_params(network_plan("resnet", n_classes=10), arch)[0]


# -------------------------------------------------------------------------- checkpoints
def test_ofa_layouts_import(net, tmp_path: Path) -> None:  # noqa: ANN001
    """OFA's dynamic layout (``OFAResNets.state_dict()``) and its static, one-level-shallower
    layout (what ``OFAResNets.load_state_dict`` accepts) both load, with the same outputs."""
    sd = ofa_state_dict(net)
    assert "input_stem.1.conv.conv.conv.weight" in sd
    assert "blocks.0.downsample.bn.bn.running_var" in sd
    assert "classifier.linear.linear.weight" in sd
    path = save_ofa_checkpoint(tmp_path / "ofa.pth", net)
    static = {k.replace("linear.linear.", "linear.").replace("bn.bn.", "bn.")
              .replace("conv.conv.weight", "conv.weight"): v for k, v in sd.items()}
    static = {("module." + k): v for k, v in static.items()}  # DataParallel prefix too
    x = torch.randn(1, 3, 128, 128)
    arch = SPACE.sample(random.Random(5)).replace(r=128)
    net.set_active(arch)
    with torch.no_grad():
        want = net(x)
    for source in (path, {"state_dict": static}):
        other = create_supernet("ofa_resnet50", n_classes=10, dropout=0.0)
        load_ofa_checkpoint(other, source).eval()
        other.set_active(arch)
        with torch.no_grad():
            torch.testing.assert_close(other(x), want, rtol=0, atol=0)
    loaded = load_any_checkpoint(path, space="ofa_resnet50")
    assert loaded.plan.n_classes == 10
    ours = save_supernet(tmp_path / "ours.pt", net)
    assert load_any_checkpoint(ours).space.name == "ofa_resnet50"
    net.set_active(SPACE.largest())


def test_mobilenet_checkpoint_into_resnet_space_is_one_line(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    mbv3 = create_supernet("ofa_mbv3", n_classes=10)
    ofa_file = save_ofa_checkpoint(tmp_path / "mbv3.pth", mbv3)
    with pytest.raises(UserError, match="does not match space ofa_resnet50"):
        load_any_checkpoint(ofa_file, space="ofa_resnet50")
    arch = json.dumps(SPACE.to_ofa_dict(SPACE.smallest()))
    for ckpt in (ofa_file, save_supernet(tmp_path / "mbv3_ours.pt", mbv3)):
        out = tmp_path / "sub.pt2"
        code = main(["extract", "--space", "ofa_resnet50", "--checkpoint", str(ckpt),
                     "--arch", arch, "--out", str(out)])
        assert code == 2 and not out.exists()
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "ofa_resnet50" in err, err
