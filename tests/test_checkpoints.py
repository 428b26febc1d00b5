"""Checkpoints: our weights_only format round-trips; OFA/CompOFA layouts load exactly."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from nets import randomize

from search_spaces.checkpoints import (
    CheckpointError,
    load_any_checkpoint,
    load_ofa_checkpoint,
    load_supernet,
    ofa_state_dict,
    save_ofa_checkpoint,
    save_supernet,
)
from search_spaces.registry import create_supernet
from search_spaces.supernet import Supernet


def same_subnet_outputs(a: Supernet, b: Supernet, n: int = 4, seed: int = 0) -> None:
    rng = random.Random(seed)
    x = torch.randn(2, 3, 32, 32)
    for _ in range(n):
        arch = a.space.sample(rng)
        ya = a.extract(arch).eval()(x)
        yb = b.extract(arch).eval()(x)
        assert torch.equal(ya, yb)


@pytest.fixture(scope="module")
def ofa_net() -> Supernet:
    torch.manual_seed(0)
    return randomize(create_supernet("ofa_mbv3", n_classes=10), 1)


def test_ofa_layout_has_the_published_keys(ofa_net: Supernet) -> None:
    sd = ofa_state_dict(ofa_net)
    assert len(sd) == 475
    for key in ("first_conv.conv.weight", "first_conv.bn.running_var",
                "blocks.0.conv.depth_conv.conv.weight", "blocks.0.conv.point_linear.bn.bias",
                "blocks.1.conv.inverted_bottleneck.conv.conv.weight",
                "blocks.1.conv.inverted_bottleneck.bn.bn.running_mean",
                "blocks.5.conv.depth_conv.conv.7to5_matrix",
                "blocks.5.conv.depth_conv.conv.5to3_matrix",
                "blocks.5.conv.depth_conv.se.fc.reduce.bias",
                "blocks.20.conv.point_linear.conv.conv.weight",
                "final_expand_layer.bn.weight", "feature_mix_layer.conv.weight",
                "classifier.linear.weight", "classifier.linear.bias"):
        assert key in sd, key
    assert sd["blocks.1.conv.depth_conv.conv.conv.weight"].shape[-1] == 7
    assert sd["blocks.1.conv.depth_conv.conv.7to5_matrix"].shape == (25, 25)
    assert sd["blocks.1.conv.depth_conv.conv.5to3_matrix"].shape == (9, 9)


@pytest.mark.parametrize("legacy", [False, True])
def test_ofa_checkpoint_loads_with_identical_subnets(ofa_net: Supernet, tmp_path: Path,
                                                     legacy: bool) -> None:
    path = save_ofa_checkpoint(tmp_path / "ofa.pth", ofa_net, legacy_names=legacy)
    raw = torch.load(path, weights_only=True)["state_dict"]
    style = "mobile_inverted_conv" if legacy else ".conv.inverted_bottleneck"
    assert any(style in k for k in raw)
    fresh = load_ofa_checkpoint(create_supernet("ofa_mbv3", n_classes=10), path)
    got = fresh.state_dict()
    for k, v in ofa_net.state_dict().items():
        assert torch.equal(got[k], v), k
    same_subnet_outputs(ofa_net, fresh)


@pytest.mark.parametrize("legacy", [False, True])
def test_compofa_checkpoint_without_matrices(tmp_path: Path, legacy: bool) -> None:
    torch.manual_seed(1)
    comp = randomize(create_supernet("compofa_mbv3", n_classes=10), 2)
    path = save_ofa_checkpoint(tmp_path / "compofa.pth", comp, legacy_names=legacy)
    raw = torch.load(path, weights_only=True)["state_dict"]
    assert not any(k.endswith("_matrix") for k in raw)
    assert len(raw) == 475 - 40
    same_subnet_outputs(comp, load_ofa_checkpoint(create_supernet("compofa_mbv3",
                                                                  n_classes=10), path))
    # into a space with matrices: they become identity, i.e. the plain centre crop
    into_ofa = create_supernet("ofa_mbv3", n_classes=10)
    with torch.no_grad():
        for name, p in into_ofa.named_parameters():
            if "matrix" in name:
                p.add_(1.0)
    load_ofa_checkpoint(into_ofa, path)
    for name, p in into_ofa.named_parameters():
        if "matrix" in name:
            assert torch.equal(p, torch.eye(p.shape[0]))
    same_subnet_outputs(comp, into_ofa)


def test_checkpoint_dropping_matrices_of_ofa(ofa_net: Supernet, tmp_path: Path) -> None:
    path = save_ofa_checkpoint(tmp_path / "nomat.pth", ofa_net, with_matrices=False)
    net = load_ofa_checkpoint(create_supernet("ofa_mbv3", n_classes=10), path)
    assert all(torch.equal(p, torch.eye(p.shape[0]))
               for n, p in net.named_parameters() if "matrix" in n)


def test_trained_matrices_into_a_space_without_them_is_an_error(ofa_net: Supernet,
                                                                 tmp_path: Path) -> None:
    path = save_ofa_checkpoint(tmp_path / "ofa.pth", ofa_net)
    with pytest.raises(CheckpointError, match="kernel-transform matrices"):
        load_ofa_checkpoint(create_supernet("compofa_mbv3", n_classes=10), path)


def test_our_checkpoint_round_trips_with_weights_only(tmp_path: Path) -> None:
    torch.manual_seed(2)
    space_net = randomize(create_supernet("ofa_proxyless", width_mult=1.3, n_classes=10,
                                          small_input=True, dropout=0.2), 3)
    extra = {"epoch": 3, "phase": "depth", "history": [0.1, 0.2], "note": None}
    path = save_supernet(tmp_path / "sub" / "ours.pt", space_net, extra=extra)
    raw = torch.load(path, weights_only=True)  # nothing pickled beyond plain data
    assert raw["spec"]["space"] == "ofa_proxyless"
    net, got_extra = load_supernet(path)
    assert got_extra == extra
    assert net.spec == space_net.spec
    assert net.plan == space_net.plan
    got = net.state_dict()
    for k, v in space_net.state_dict().items():
        assert torch.equal(got[k], v), k
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["ours.pt"]


def test_restricted_space_round_trips(tmp_path: Path) -> None:
    from search_spaces.spaces import get_space

    space = get_space("ofa_mbv3").restrict(kernels=[7], depths=[4], name="phase1")
    net = create_supernet(space, n_classes=10)
    net2, _ = load_supernet(save_supernet(tmp_path / "p.pt", net))
    assert net2.space == space


def test_load_any_checkpoint_reads_both_formats(ofa_net: Supernet, tmp_path: Path) -> None:
    ofa_path = save_ofa_checkpoint(tmp_path / "ofa.pth", ofa_net)
    ours_path = save_supernet(tmp_path / "ours.pt", ofa_net)
    a = load_any_checkpoint(ofa_path, space="ofa_mbv3")  # n_classes read from the file
    b = load_any_checkpoint(ours_path)
    assert a.plan.n_classes == b.plan.n_classes == 10
    same_subnet_outputs(a, b, n=2)
    with pytest.raises(CheckpointError, match="needs --space"):
        load_any_checkpoint(ofa_path)
    with pytest.raises(CheckpointError, match="holds space ofa_mbv3"):
        load_any_checkpoint(ours_path, space="compofa_mbv3")
    with pytest.raises(CheckpointError, match="holds width 1"):
        load_any_checkpoint(ours_path, width_mult=1.2)


def test_bad_checkpoints_are_user_errors(ofa_net: Supernet, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    other = tmp_path / "other.pt"
    torch.save({"weights": [1, 2, 3]}, other)
    ofa_path = save_ofa_checkpoint(tmp_path / "ofa.pth", ofa_net)
    ours_path = save_supernet(tmp_path / "ours.pt", ofa_net)
    fresh = create_supernet("ofa_mbv3", n_classes=10)
    cases = [
        (lambda: load_supernet(text), "not a readable PyTorch checkpoint"),
        (lambda: load_supernet(tmp_path / "missing.pt"), "no such file"),
        (lambda: load_supernet(other), "not an ofa-platform supernet checkpoint"),
        (lambda: load_supernet(ofa_path), "looks like an OFA file"),
        (lambda: load_ofa_checkpoint(fresh, text), "not a readable"),
        (lambda: load_ofa_checkpoint(fresh, ours_path), "use load_supernet"),
        (lambda: load_ofa_checkpoint(fresh, {"state_dict": {}}), "no state_dict"),
        (lambda: load_ofa_checkpoint(create_supernet("ofa_proxyless", n_classes=10), ofa_path),
         "does not match space ofa_proxyless"),
        (lambda: load_ofa_checkpoint(create_supernet("ofa_mbv3", width_mult=1.2, n_classes=10),
                                     ofa_path), r"has shape .* width 1.2 expects"),
        (lambda: load_ofa_checkpoint(create_supernet("ofa_mbv3", n_classes=1000), ofa_path),
         "classifier.linear.weight has shape"),
    ]
    for fn, pattern in cases:
        with pytest.raises(CheckpointError, match=pattern):
            fn()
    for fn, _ in cases:  # every message is one line
        try:
            fn()
        except CheckpointError as exc:
            assert "\n" not in str(exc)


def test_model_layer_imports_nothing_from_the_platform() -> None:
    """``search_spaces`` is the lower layer: loading it must not load ``ofa_platform``."""
    import subprocess
    import sys

    code = ("import sys, search_spaces.checkpoints, search_spaces.registry; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ofa_platform'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_weights_fingerprint_ignores_provenance(tmp_path: Path) -> None:
    """Saved with different run ids and loaded back: one fingerprint (a retrained identical
    supernet reuses the accuracy cache); other weights or another width: another one."""
    from search_spaces.checkpoints import weights_fingerprint

    net = create_supernet("compofa_mbv3", width_mult=0.5, n_classes=10)
    a = save_supernet(tmp_path / "a.pt", net, extra={"mlflow_run_id": "run-1"})
    b = save_supernet(tmp_path / "b.pt", net, extra={"mlflow_run_id": "run-2"})
    assert a.read_bytes() != b.read_bytes()
    loaded_a, loaded_b = load_supernet(a)[0], load_supernet(b)[0]
    assert weights_fingerprint(loaded_a) == weights_fingerprint(loaded_b) \
        == weights_fingerprint(net)
    with torch.no_grad():
        next(loaded_b.parameters()).add_(1e-3)
    assert weights_fingerprint(loaded_b) != weights_fingerprint(loaded_a)
    wider = create_supernet("compofa_mbv3", width_mult=1.0, n_classes=10)
    assert weights_fingerprint(wider) != weights_fingerprint(net)
