"""BN recalibration (OFA's recipe) and top-1 evaluation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ofa_platform.errors import UserError
from ofa_platform.evaluation import evaluate_top1, recalibrate_bn
from search_spaces.registry import create_supernet
from search_spaces.supernet import Supernet


@pytest.fixture(scope="module")
def net() -> Supernet:
    torch.manual_seed(0)
    return create_supernet("compofa_mbv3", n_classes=10, small_input=True, dropout=0.0)


def test_recalibration_sets_batch_weighted_statistics(net: Supernet) -> None:
    arch = net.space.smallest(128)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(n, 3, 16, 16, generator=g) * 2 + 1 for n in (5, 3, 8)]
    model = recalibrate_bn(net, arch, batches)
    assert not model.training
    # the supernet is untouched
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    # the stem BN sees the stem conv output: its statistics are the size-weighted means
    stem_conv, stem_bn = model.stem.conv, model.stem.bn
    with torch.no_grad():
        feats = [stem_conv(b) for b in batches]
    sizes = torch.tensor([b.shape[0] for b in batches], dtype=torch.float32)
    means = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats])
    varis = torch.stack([f.var(dim=(0, 2, 3), unbiased=False) for f in feats])
    want_mean = (means * sizes[:, None]).sum(0) / sizes.sum()
    want_var = (varis * sizes[:, None]).sum(0) / sizes.sum()
    assert torch.allclose(stem_bn.running_mean, want_mean, atol=1e-5)
    assert torch.allclose(stem_bn.running_var, want_var, atol=1e-5)


def test_single_batch_recalibration_makes_eval_equal_train(net: Supernet) -> None:
    """With one batch, every BN's running stats are that batch's (biased) statistics, so the
    eval-mode network reproduces the train-mode one on the same batch, layer after layer."""
    arch = net.space.largest(224)
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    model = recalibrate_bn(net, arch, [(x, torch.zeros(6, dtype=torch.long))])
    with torch.no_grad():
        y_eval = model(x)
        y_train = model.train()(x)
    assert torch.allclose(y_eval, y_train, atol=1e-4)


def test_recalibration_without_images_is_a_user_error(net: Supernet) -> None:
    with pytest.raises(UserError, match="at least one batch"):
        recalibrate_bn(net, net.space.smallest(128), [])


class _Logits(nn.Module):
    """The input rows are the logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_evaluate_top1_counts_correct_predictions() -> None:
    logits = torch.eye(4)[[0, 1, 2, 3, 0, 1]]  # predicts 0,1,2,3,0,1
    labels = torch.tensor([0, 1, 0, 3, 2, 1])  # 4 of 6 right
    batches = [(logits[:4], labels[:4]), (logits[4:], labels[4:])]
    assert evaluate_top1(_Logits(), batches) == pytest.approx(4 / 6)
    with pytest.raises(UserError, match="no samples"):
        evaluate_top1(_Logits(), [])
