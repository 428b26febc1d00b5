"""The accuracy predictor: the published OFA MLP and our own trained ones."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_platform.errors import UserError
from ofa_platform.search.genes import GeneCodec
from ofa_platform.search.predictor import (
    default_encoding,
    kendall_tau,
    load_predictor,
    published_encoding,
    single_thread,
    train_predictor,
)
from search_spaces.spaces import get_space

RES = tuple(range(160, 225, 4))


@pytest.fixture(scope="module")
def published(shared_data: Path) -> Path:
    return shared_data / "ofa_mbv3_imagenet" / "acc_predictor.pth"


def test_published_predictor_anchors(published: Path) -> None:
    space = get_space("ofa_mbv3")
    codec = GeneCodec(space, RES)
    pred = load_predictor(published, codec)
    largest, smallest = pred.predict_archs(codec, [space.largest(224), space.smallest(160)])
    assert largest == pytest.approx(0.836, abs=5e-4)
    assert smallest == pytest.approx(0.753, abs=5e-4)


def test_encoding_matches_the_published_layout() -> None:
    space = get_space("ofa_mbv3")
    codec = GeneCodec(space, RES)
    arch = space.parse_arch({"ks": [3, 5, 7, 3] * 5, "e": [6, 4, 3, 3] * 5,
                             "d": [2, 3, 4, 2, 3], "r": 176})
    x = published_encoding().features(codec, codec.encode([arch]))[0]
    assert x.shape == (128,) and x.sum() == 14 * 2 + 1
    # slot 0: kernel 3, ratio 6; slot 1: kernel 5, ratio 4; slot 2 skipped (stage depth 2)
    assert x[0:3].tolist() == [1, 0, 0] and x[60:63].tolist() == [0, 0, 1]
    assert x[3:6].tolist() == [0, 1, 0] and x[63:66].tolist() == [0, 1, 0]
    assert x[6:9].sum() == 0 and x[66:69].sum() == 0
    assert x[120 + (176 - 112) // 16] == 1


def test_wrong_input_size_is_a_user_error(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(100, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    path = tmp_path / "bad.pth"
    torch.save(net.state_dict(), path)
    codec = GeneCodec(get_space("ofa_mbv3"), RES)
    with pytest.raises(UserError, match="takes 100 inputs but space ofa_mbv3 encodes to 128"):
        load_predictor(path, codec)


def test_train_own_predictor_ranks_held_out_archs(tmp_path: Path) -> None:
    """A synthetic ground truth that depends on the arch: the trained MLP must rank held-out
    archs well and round-trip through our file format."""
    space = get_space("compofa_mbv3_ek")
    codec = GeneCodec(space, (128, 160, 192))
    rng = random.Random(0)
    archs = list(dict.fromkeys(space.sample(rng).replace(r=rng.choice(codec.resolutions))
                               for _ in range(400)))
    x = default_encoding(codec).features(codec, codec.encode(archs))
    w = np.random.default_rng(0).normal(size=x.shape[1]) * 0.01
    acc = 0.6 + x @ w
    with single_thread():  # a small MLP trains fastest on one thread of a busy 2-core machine
        pred, metrics = train_predictor(codec, archs, acc, seed=0, epochs=60, hidden=64)
    assert metrics["n_val"] == pytest.approx(0.2 * len(archs), abs=1)
    assert metrics["kendall_tau"] > 0.7
    assert metrics["rmse"] < 0.5 * float(np.std(acc))
    path = pred.save(tmp_path / "p.pth", metrics)
    again = load_predictor(path, codec)
    np.testing.assert_allclose(again.predict_archs(codec, archs[:10]),
                               pred.predict_archs(codec, archs[:10]), rtol=1e-6)


def test_kendall_tau() -> None:
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)
