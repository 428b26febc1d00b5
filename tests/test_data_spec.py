"""A Parquet path trains as its recipe name does: the recipe in the file's schema metadata, or
one inferred from the images (size, statistics, stem), is what the run uses and logs."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from ofa_platform.datasets import (
    describe_spec,
    infer_resolutions,
    make_synthetic,
    parse_data_spec,
    recipe_metadata,
)
from ofa_platform.errors import UserError


def _write_parquet(directory: Path, n: int = 64, size: int = 32,
                   metadata: dict[bytes, bytes] | None = None) -> Path:
    images, labels = make_synthetic(n, size=size, seed=3)
    blobs = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="PNG")
        blobs.append(buf.getvalue())
    table = pa.table({"image": blobs, "label": labels.to(torch.int16).numpy()})
    if metadata:
        table = table.replace_schema_metadata(metadata)
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, directory / "train.parquet")
    return directory


def _training_config(spec: object) -> tuple:
    return (spec.small_input, spec.resolutions, spec.mean, spec.std)


def test_parquet_with_recipe_metadata_trains_like_the_recipe(tmp_path: Path) -> None:
    recipe = parse_data_spec("cifar10")
    meta = recipe_metadata(resolutions=recipe.resolutions, mean=recipe.mean, std=recipe.std,
                           small_input=recipe.small_input, image_size=32,
                           classes=[f"c{i}" for i in range(10)])
    spec = parse_data_spec(f"parquet:{_write_parquet(tmp_path / 'd', metadata=meta)}")
    assert _training_config(spec) == _training_config(recipe)
    assert spec.n_classes == 10 and "metadata" in spec.origin
    assert describe_spec(spec)["data_resolutions"] == "24,28,32"


def test_parquet_without_metadata_is_inferred(tmp_path: Path) -> None:
    """32-px images: the cifar10 recipe's stem and resolutions; normalisation from the data."""
    spec = parse_data_spec(f"parquet:{_write_parquet(tmp_path / 'd')}")
    recipe = parse_data_spec("cifar10")
    assert spec.small_input is True and spec.resolutions == recipe.resolutions
    assert spec.image_size == 32 and "inferred from 64 images" in spec.origin
    assert all(0.0 < m < 1.0 for m in spec.mean) and all(0.0 < s < 0.5 for s in spec.std)
    assert spec.mean != (0.485, 0.456, 0.406)  # not ImageNet's by default any more
    big = parse_data_spec(f"parquet:{_write_parquet(tmp_path / 'big', n=4, size=160)}")
    assert big.small_input is False and big.resolutions == infer_resolutions(160)
    assert big.resolutions[0] == 128 and big.resolutions[-1] == 160


def test_bad_recipe_metadata_is_one_line(tmp_path: Path) -> None:
    d = _write_parquet(tmp_path / "d", n=4, metadata={b"ofa.recipe": b'{"mean": [1]}'})
    with pytest.raises(UserError, match="bad ofa.recipe metadata"):
        parse_data_spec(f"parquet:{d}")


def test_cifar10_path_and_recipe_give_the_same_training(shared_data: Path) -> None:
    """The README's ``parquet:../shared/data/cifar10`` against the recipe ``cifar10``, through
    the training driver's own preparation: same stem and resolutions, CIFAR-10 statistics
    (estimated from 1,024 images, within 0.01 of the published ones) instead of ImageNet's."""
    from ofa_platform.train.runner import TrainRequest, prepare

    runs = [prepare(TrainRequest(schedule="ofa", data=data, subset=64, workers=1))
            for data in (f"parquet:{shared_data / 'cifar10'}", "cifar10")]
    by_path, by_recipe = (r.engine for r in runs)
    assert by_path.small_input is by_recipe.small_input is True
    assert by_path.data.resolutions == by_recipe.data.resolutions == (24, 28, 32)
    for got, want in ((by_path.data.mean, by_recipe.data.mean),
                      (by_path.data.std, by_recipe.data.std)):
        assert max(abs(a - b) for a, b in zip(got, want)) < 0.01, (got, want)
