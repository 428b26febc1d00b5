"""Our ResNet50D against the reference ``OFAResNets`` (``ofa`` package, installed aside).

One random state dict goes into both supernets; for 50 random archs (OFA's dict form) the
supernet outputs and the extracted static subnets' outputs must agree in eval mode, and the
reference's own MACs/params counter must give the issue's anchors. Skipped cleanly when the
reference cannot be installed (no package index), as ``test_benchmark_harness.py`` does.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from search_spaces.blueprint import network_plan
from search_spaces.checkpoints import load_ofa_checkpoint
from search_spaces.flops import count_macs_params
from search_spaces.registry import create_supernet
from search_spaces.spaces import get_space

REPO = Path(__file__).resolve().parents[1]
N_ARCHS = 50
RES = 32  # small, so 2 x 50 forwards and extractions stay cheap; shapes are size-independent


def _reference_module() -> ModuleType:
    key = "_bench_reference_for_resnet_tests"
    if key in sys.modules:
        return sys.modules[key]
    spec = importlib.util.spec_from_file_location(key, REPO / "benchmarks" / "reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    reference = _reference_module()
    target = reference.default_reference_dir(REPO)
    if not reference.is_installed(target):
        target = tmp_path_factory.mktemp("ofa_ref") / "ref"
        try:
            reference.ensure_reference(target, timeout_s=120)
        except reference.ReferenceUnavailable as exc:
            pytest.skip(f"reference not installable here: {exc}")
    return reference, reference.load_reference(target)


@pytest.fixture(scope="module")
def pair(ref):  # noqa: ANN001, ANN201
    reference, handle = ref
    torch.manual_seed(0)
    theirs = reference.build_resnet_supernet(handle, n_classes=10)
    with torch.no_grad():  # non-trivial BN, so eval mode checks statistics as well as weights
        for m in theirs.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    space = get_space("ofa_resnet50").with_resolutions((RES,))
    ours = create_supernet(space, n_classes=10, dropout=0.0)
    load_ofa_checkpoint(ours, {"state_dict": theirs.state_dict()})
    return reference, ours.eval(), theirs.eval()


def test_outputs_equal_reference_for_50_random_archs(pair) -> None:  # noqa: ANN001
    reference, ours, theirs = pair
    space = ours.space
    rng = random.Random(0)
    archs = [space.largest(RES), space.smallest(RES)]
    archs += [space.sample(rng) for _ in range(N_ARCHS - 2)]
    assert len(set(archs)) == N_ARCHS
    x = torch.randn(2, 3, RES, RES)
    for arch in archs:
        ofa = space.to_ofa_dict(arch)
        assert space.parse_arch(ofa) == arch
        ours.set_active(arch)
        reference.set_active_resnet(theirs, ofa)
        with torch.no_grad():
            want = theirs(x)
            torch.testing.assert_close(ours(x), want, rtol=1e-5, atol=1e-6)
            their_sub = theirs.get_active_subnet(preserve_weight=True).eval()
            our_sub = ours.extract(arch).eval()
            assert ([tuple(p.shape) for p in our_sub.parameters()]
                    == [tuple(p.shape) for p in their_sub.parameters()]), arch.key
            got = our_sub(x)
            torch.testing.assert_close(got, their_sub(x), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_train_mode_outputs_equal_reference(pair) -> None:  # noqa: ANN001
    reference, ours, theirs = pair
    space = ours.space
    x = torch.randn(4, 3, RES, RES)
    try:
        for arch in (space.smallest(RES), space.sample(random.Random(9))):
            ours.set_active(arch)
            reference.set_active_resnet(theirs, space.to_ofa_dict(arch))
            ours.train()
            theirs.train()
            with torch.no_grad():
                torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)
    finally:
        ours.eval()
        theirs.eval()


def test_reference_counter_gives_the_anchors(ref) -> None:  # noqa: ANN001
    reference, handle = ref
    space = get_space("ofa_resnet50")
    net = reference.build_resnet_supernet(handle)
    assert sum(p.numel() for p in net.parameters()) == 48_105_992
    plan = network_plan("resnet")
    for arch, want_macs, want_params in ((space.largest(224), 7.49e9, 48_105_992),
                                         (space.smallest(128), 315.1e6, 6_539_280)):
        reference.set_active_resnet(net, space.to_ofa_dict(arch))
        macs, params = reference.count_resnet(handle, net.get_active_subnet(), arch.r)
        ours_macs, ours_params = count_macs_params(plan, arch)
        assert params == ours_params == want_params
        assert macs == pytest.approx(want_macs, rel=5e-4)
        # theirs accumulates per-layer counts in float32 tensors; ours is the exact sum
        assert macs == pytest.approx(ours_macs, rel=1e-6)
