"""Datasets: the CIFAR-10 Parquet in place, generated data, ImageFolder trees, batching."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ofa_platform.datasets import (
    TensorImageDataset,
    iterate_batches,
    load_dataset,
    make_synthetic,
    parse_data_spec,
    train_size,
)
from ofa_platform.errors import UserError


def test_cifar_parquet_subset(shared_data: Path) -> None:
    spec = parse_data_spec("cifar10")
    assert spec.path == shared_data / "cifar10" and spec.small_input
    d = load_dataset(spec, subset=300, val_fraction=0.2, seed=0)
    assert (d.n_train, d.n_val, d.n_classes) == (240, 60, 10)
    assert d.classes[0] == "airplane" and d.resolutions == (24, 28, 32)
    img, label = d.train[0]
    assert img.dtype == torch.uint8 and img.shape == (3, 32, 32) and 0 <= label < 10
    again = load_dataset(f"parquet:{shared_data / 'cifar10'}", subset=300, val_fraction=0.2)
    assert torch.equal(again.val.images, d.val.images)  # the split is fixed by the seed
    other = load_dataset(spec, subset=300, val_fraction=0.2, seed=1)
    assert not torch.equal(other.val.labels, d.val.labels)
    assert train_size(spec) == 45_000  # from the metadata, nothing decoded
    x, y = next(iterate_batches(d, batch_size=64, resolution=28, train=True, seed=0, epoch=0))
    assert x.shape == (64, 3, 28, 28) and x.dtype == torch.float32 and y.shape == (64,)
    assert abs(float(x.mean())) < 0.5 and 0.6 < float(x.std()) < 1.5  # normalised


def test_heads_decode_only_the_first_rows_of_each_split(shared_data: Path,
                                                       tmp_path: Path) -> None:
    from PIL import Image

    for c in ("cat", "dog"):
        (tmp_path / "train" / c).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / "train" / c / f"{i}.png")
    (tmp_path / "val").mkdir()
    for spec, subset in (("cifar10", 400), ("synthetic:300", None),
                         (f"imagefolder:{tmp_path}", None)):
        full = load_dataset(spec, subset=subset, seed=3)
        head = load_dataset(spec, subset=subset, seed=3, heads=(7, None))
        assert len(head.train) == 7 and len(head.val) == len(full.val) and head.test is None
        for i in range(7):
            assert torch.equal(head.train[i][0], full.train[i][0]), spec
            assert head.train[i][1] == full.train[i][1]
        assert head.resolutions == full.resolutions
        m = min(3, len(full.val))
        both = load_dataset(spec, subset=subset, seed=3, heads=(2, m))
        assert (len(both.train), len(both.val)) == (2, m)
        assert [both.val[i][1] for i in range(m)] == [full.val[i][1] for i in range(m)]
    with pytest.raises(UserError, match="heads .*at least 1 row"):
        load_dataset("synthetic:40", heads=(0, None))


def _indexed(n: int) -> TensorImageDataset:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 8, 8).clone()
    return TensorImageDataset(images, torch.arange(n))


def test_sharding_shuffling_and_augmentation() -> None:
    ds = _indexed(103)
    kw = dict(batch_size=10, resolution=8, seed=3, world_size=2)
    seen = [torch.cat([y for _, y in iterate_batches(ds, train=True, epoch=0, rank=r, **kw)])
            for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 50  # same step count on every rank, full batches
    assert not set(seen[0].tolist()) & set(seen[1].tolist())
    again = torch.cat([y for _, y in iterate_batches(ds, train=True, epoch=0, rank=0, **kw)])
    assert torch.equal(again, seen[0])
    later = torch.cat([y for _, y in iterate_batches(ds, train=True, epoch=1, rank=0, **kw)])
    assert not torch.equal(later, seen[0])
    evals = [torch.cat([y for _, y in iterate_batches(ds, train=False, epoch=0, rank=r, **kw)])
             for r in (0, 1)]
    assert sorted(torch.cat(evals).tolist()) == list(range(103))
    # a shard smaller than a batch still gives one step
    tiny = list(iterate_batches(_indexed(6), batch_size=10, resolution=8, train=True, seed=0,
                                epoch=0, rank=1, world_size=2))
    assert len(tiny) == 1 and len(tiny[0][1]) == 3
    # evaluation is not augmented; training crops and flips
    x_eval, _ = next(iterate_batches(ds, batch_size=4, resolution=8, train=False, seed=0,
                                     epoch=0, mean=(0, 0, 0), std=(1 / 255,) * 3))
    assert torch.equal(x_eval, ds.images[:4].float())
    img = torch.randint(0, 255, (64, 3, 16, 16), dtype=torch.uint8)
    aug = TensorImageDataset(img, torch.zeros(64, dtype=torch.int64))
    x_tr, _ = next(iterate_batches(aug, batch_size=64, resolution=16, train=True, seed=0,
                                   epoch=0, mean=(0, 0, 0), std=(1 / 255,) * 3))
    assert not torch.equal(x_tr.sort(0).values, img.float().sort(0).values)


def test_synthetic_is_deterministic_and_learnable() -> None:
    a, la = make_synthetic(400, seed=5)
    b, lb = make_synthetic(400, seed=5)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(make_synthetic(400, seed=6)[0], a)
    assert torch.bincount(la).tolist() == [40] * 10
    d = load_dataset("synthetic:600", seed=0)
    assert d.n_train + d.n_val == 600 and d.n_classes == 10 and d.small_input
    # a nearest-centroid classifier on per-image colour statistics is far above chance
    feats = lambda x: torch.cat([x.float().mean((2, 3)), x.float().std((2, 3))], 1)  # noqa: E731
    tr, va = d.train, d.val
    centroids = torch.stack([feats(tr.images[tr.labels == c]).mean(0) for c in range(10)])
    pred = torch.cdist(feats(va.images), centroids).argmin(1)
    assert (pred == va.labels).float().mean() > 0.5


def test_imagefolder_tree(tmp_path: Path) -> None:
    from PIL import Image

    for c, colour in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
        (tmp_path / "train" / c).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (20 + i, 24), colour).save(tmp_path / "train" / c / f"{i}.png")
    d = load_dataset(f"imagefolder:{tmp_path}", val_fraction=0.25, seed=0)
    assert d.classes == ("cat", "dog") and (d.n_train, d.n_val) == (9, 3)
    img, label = d.train[0]
    assert img.dtype == torch.uint8 and img.shape[0] == 3
    batches = list(iterate_batches(d, batch_size=4, resolution=16, train=True, seed=0, epoch=0))
    assert [x.shape for x, _ in batches] == [(4, 3, 16, 16)] * 2
    x, y = next(iterate_batches(d, batch_size=8, resolution=16, train=False, seed=0, epoch=0))
    assert x.shape == (3, 3, 16, 16) and set(y.tolist()) <= {0, 1}
    red = x[y == 0]  # colour survives decoding, cropping and normalisation
    if len(red):
        assert bool((red[:, 0].mean() > red[:, 2].mean()).all())
    assert train_size(f"imagefolder:{tmp_path}", val_fraction=0.25) == d.n_train
    assert train_size("synthetic:600") == load_dataset("synthetic:600").n_train
    sub = load_dataset(f"imagefolder:{tmp_path}", subset=4, val_fraction=0.25)
    assert sub.n_train + sub.n_val == 4


def test_bad_specs_and_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=str(tmp_path / "nowhere")):
        load_dataset(f"parquet:{tmp_path / 'nowhere'}")
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'nowhere'}")
    with pytest.raises(UserError, match="expected parquet:DIR.*cifar10"):
        parse_data_spec("mnist")
    with pytest.raises(UserError, match="synthetic:N"):
        parse_data_spec("synthetic:lots")
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "gone.yaml").write_text("kind: parquet\npath: no/such/dir\n")
    with pytest.raises(UserError, match="no/such/dir"):
        load_dataset(parse_data_spec("gone", datasets_dir=recipes))
    (recipes / "odd.yaml").write_text("kind: tape\ncolour: red\n")
    with pytest.raises(UserError, match="colour: unknown key.*kind: 'tape'"):
        parse_data_spec("odd", datasets_dir=recipes)


def _batches_on(device: str | None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    images, labels = make_synthetic(96, seed=2)
    ds = TensorImageDataset(images, labels)
    return list(iterate_batches(ds, batch_size=32, resolution=24, train=True, seed=4, epoch=1,
                                device=device))


def test_device_path_matches_host_path() -> None:
    for (xa, ya), (xb, yb) in zip(_batches_on(None), _batches_on("cpu")):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_augmentation_matches_cpu() -> None:
    for (xa, ya), (xb, yb) in zip(_batches_on(None), _batches_on("cuda")):
        assert xb.is_cuda and torch.equal(ya, yb.cpu())
        assert torch.allclose(xa, xb.cpu(), atol=1e-4)
