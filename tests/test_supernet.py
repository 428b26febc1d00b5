"""The torch supernets: parameter anchors, extraction equals the supernet, channel sorting."""

from __future__ import annotations

import random

import pytest
import torch
from nets import randomize
from torch import nn

from search_spaces.arch import ArchError
from search_spaces.blueprint import middle_channels
from search_spaces.flops import count_macs_params
from search_spaces.ops import DynamicDepthwiseConv2d, DynamicMBConv
from search_spaces.registry import create_supernet
from search_spaces.spaces import get_space, list_spaces

N_ARCHS = 60  # random archs per space, besides the two ends (where slicing bugs show first)


def n_params(module: nn.Module, only: str = "") -> int:
    return sum(p.numel() for n, p in module.named_parameters() if only in n)


def test_ofa_mbv3_parameter_anchor() -> None:
    net = create_supernet("ofa_mbv3")
    assert n_params(net) == 7_678_880
    assert n_params(net, "matrix") == 14_120
    # CompOFA has no transformation matrices: the same network without them
    comp = create_supernet("compofa_mbv3")
    assert n_params(comp, "matrix") == 0
    assert n_params(comp) == 7_678_880 - 14_120


def test_extracted_params_match_the_analytic_count() -> None:
    net = create_supernet("ofa_mbv3")
    space = net.space
    for arch in (space.largest(224), space.smallest(128), space.sample(random.Random(3))):
        _, params = count_macs_params(net.plan, arch)
        assert n_params(net.extract(arch)) == params
    assert n_params(net.extract(space.largest(224))) == 7_664_760
    assert n_params(net.extract(space.smallest(128))) == 3_410_792


@pytest.mark.parametrize("space", list_spaces())
def test_extract_equals_supernet_train_and_eval(space: str) -> None:
    torch.manual_seed(0)
    small = space == "ofa_proxyless"  # one space also exercises the 32x32 variant
    net = randomize(create_supernet(space, n_classes=10, small_input=small, dropout=0.0), 1)
    rng = random.Random(space)
    x = torch.randn(2, 3, 16 if small else 32, 16 if small else 32)
    worst = 0.0
    ends = [net.space.smallest(), net.space.largest()]
    for arch in ends + [net.space.sample(rng) for _ in range(N_ARCHS)]:
        net.set_active(arch)
        net.eval()
        sub = net.extract(arch)
        assert not sub.training
        with torch.no_grad():
            worst = max(worst, (net(x) - sub(x)).abs().max().item())
            net.train()
            sub.train()
            worst = max(worst, (net(x) - sub(x)).abs().max().item())
    assert worst <= 1e-5


def test_extract_in_train_mode_with_dropout_matches_under_same_seed() -> None:
    net = randomize(create_supernet("ofa_mbv3", n_classes=10, dropout=0.5), 2).train()
    arch = net.space.sample(random.Random(5))
    net.set_active(arch)
    sub = net.extract(arch)
    assert sub.training
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.manual_seed(7)
        a = net(x)
        torch.manual_seed(7)
        b = sub(x)
    assert torch.allclose(a, b, atol=1e-5)


def test_extract_is_independent_of_the_supernet() -> None:
    net = randomize(create_supernet("ofa_mbv3", n_classes=10), 3).eval()
    arch = net.space.sample(random.Random(1))
    sub = net.extract(arch)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = sub(x)
        for p in net.parameters():
            p.mul_(0.5)
        after = sub(x)
    assert torch.equal(before, after)
    ptrs = {p.data_ptr() for p in net.parameters()} | {b.data_ptr() for b in net.buffers()}
    assert not ptrs & {t.data_ptr() for t in list(sub.parameters()) + list(sub.buffers())}


def test_extract_leaves_the_active_arch() -> None:
    net = create_supernet("ofa_mbv3", n_classes=10)
    a, b = net.space.smallest(128), net.space.largest(224)
    net.set_active(a)
    net.extract(b)
    assert net.active_arch == a


def test_only_active_blocks_run() -> None:
    net = create_supernet("ofa_mbv3", n_classes=10).eval()
    calls: list[int] = []
    for i, block in enumerate(net.blocks):
        block.register_forward_hook(lambda m, inp, out, i=i: calls.append(i))
    arch = net.space.smallest(128)
    net.set_active(arch)
    with torch.no_grad():
        net(torch.randn(1, 3, 32, 32))
    expected = [0] + [i for idx, d in zip(net.stage_blocks, arch.d) for i in idx[:d]]
    assert calls == expected


def test_set_active_validates_against_the_space() -> None:
    net = create_supernet("compofa_mbv3", n_classes=10)
    bad = get_space("ofa_mbv3").largest(224)  # kernel 7 everywhere: not in CompOFA
    with pytest.raises(ArchError, match="ks of stage 0"):
        net.set_active(bad)


def test_train_forward_updates_only_the_active_bn_slice() -> None:
    net = create_supernet("ofa_mbv3", n_classes=10).train()
    arch = net.space.smallest(128)
    net.set_active(arch)
    block = net.blocks[net.stage_blocks[0][0]]
    assert isinstance(block, DynamicMBConv)
    mid = middle_channels(block.in_ch, 3)
    before = block.expand_bn.running_mean.clone()
    with torch.no_grad():
        net(torch.randn(4, 3, 32, 32))
    after = block.expand_bn.running_mean
    assert not torch.equal(before[:mid], after[:mid])
    assert torch.equal(before[mid:], after[mid:])
    assert int(block.expand_bn.num_batches_tracked) == 1


def test_kernel_transform_matches_ofa_formula() -> None:
    torch.manual_seed(0)
    conv = DynamicDepthwiseConv2d(16, (3, 5, 7), 1, kernel_transform=True)
    with torch.no_grad():
        conv.matrix_7to5.copy_(torch.randn(25, 25))
        conv.matrix_5to3.copy_(torch.randn(9, 9))
    w = conv.weight.detach()
    # 7 -> 5: the 5x5 centre, flattened, times the 25x25 matrix (as a linear layer: x @ M^T)
    w5 = (w[:8, 0, 1:6, 1:6].reshape(8, 25) @ conv.matrix_7to5.detach().t()).reshape(8, 1, 5, 5)
    w3 = (w5[:, 0, 1:4, 1:4].reshape(8, 9) @ conv.matrix_5to3.detach().t()).reshape(8, 1, 3, 3)
    assert torch.allclose(conv.active_weight(8, 5), w5)
    assert torch.allclose(conv.active_weight(8, 3), w3)
    assert torch.equal(conv.active_weight(8, 7), w[:8])
    plain = DynamicDepthwiseConv2d(16, (3, 5, 7), 1, kernel_transform=False)
    assert torch.equal(plain.active_weight(4, 3), plain.weight[:4, :, 2:5, 2:5])


def test_kernel_matrices_only_in_transform_spaces() -> None:
    for name in list_spaces():
        net = create_supernet(name)
        has = n_params(net, "matrix") > 0
        assert has == get_space(name).kernel_transform, name


def test_sort_channels_keeps_function_and_nests_widths() -> None:
    torch.manual_seed(0)
    net = randomize(create_supernet("ofa_mbv3", n_classes=10, dropout=0.0), 4)
    largest = net.space.largest(224)
    x = torch.randn(2, 3, 32, 32)
    net.set_active(largest)
    with torch.no_grad():
        net.eval()
        ref_eval = net(x)
        importance_before = [b.project_conv.weight.abs().sum(dim=(0, 2, 3))
                             for b in net.dynamic_blocks()]
        net.sort_channels()
        assert torch.allclose(net(x), ref_eval, atol=1e-5)
        net.train()
        ref_train = net(x)
        net.sort_channels()  # sorting again is a no-op on an already sorted net
        assert torch.allclose(net(x), ref_train, atol=1e-5)
    for block, before in zip(net.dynamic_blocks(), importance_before):
        after = block.project_conv.weight.abs().sum(dim=(0, 2, 3))
        assert torch.all(after[:-1] >= after[1:]), "middle channels not sorted by importance"
        for ratio in block.ratios:  # every width keeps the most important channels
            mid = middle_channels(block.in_ch, ratio)
            top = before.sort(descending=True).values[:mid]
            assert torch.allclose(after[:mid], top)
        if block.se is not None:
            se_imp = block.se.expand.weight.abs().sum(dim=(0, 2, 3))
            assert torch.all(se_imp[:-1] >= se_imp[1:])


def test_spec_rebuilds_the_same_shapes() -> None:
    space = get_space("ofa_mbv3").restrict(kernels=[7], name="phase_k7")
    net = create_supernet(space, width_mult=1.2, n_classes=7, small_input=True)
    import json

    spec = json.loads(json.dumps(net.spec))
    again = create_supernet(**spec)
    assert again.space == space
    assert {k: v.shape for k, v in again.state_dict().items()} == {
        k: v.shape for k, v in net.state_dict().items()}


def test_create_supernet_rejects_bad_arguments() -> None:
    with pytest.raises(KeyError, match="unknown space"):
        create_supernet("nope")
    with pytest.raises(ValueError, match="width_mult"):
        create_supernet("ofa_mbv3", width_mult=0)


@pytest.mark.parametrize("space,eps", [("ofa_mbv3", 1e-5), ("ofa_proxyless", 1e-3)])
def test_batchnorm_settings_in_supernet_and_subnet(space: str, eps: float) -> None:
    net = create_supernet(space, n_classes=10)
    sub = net.extract(net.space.smallest(128))
    for model in (net, sub):
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert bns and all(m.eps == eps and m.momentum == 0.1 for m in bns)


def test_dropout_sits_before_the_classifier() -> None:
    net = create_supernet("ofa_mbv3", n_classes=10, dropout=0.3)
    seen: list[str] = []
    net.dropout.register_forward_hook(lambda *a: seen.append("dropout"))
    net.classifier.register_forward_hook(lambda *a: seen.append("classifier"))
    net.eval()(torch.randn(1, 3, 32, 32))
    assert seen == ["dropout", "classifier"] and net.dropout.p == 0.3


def test_dynamic_linear_uses_the_first_features() -> None:
    from search_spaces.ops import DynamicLinear

    torch.manual_seed(0)
    lin = DynamicLinear(8, 6)
    with torch.no_grad():
        lin.bias.normal_()
    x = torch.randn(3, 5)
    y = lin(x, 4)
    assert torch.allclose(y, x @ lin.weight[:4, :5].t() + lin.bias[:4])
    static = lin.extract(5, 4)
    assert type(static) is nn.Linear and torch.allclose(static(x), y)
