"""Image datasets for training: Parquet, ImageFolder trees and a generated set, as uint8 tensors.

A data spec names where images come from: ``parquet:DIR`` (``DIR/train.parquet``, optional
``DIR/test.parquet``; columns ``image`` (encoded bytes) and ``label``), ``imagefolder:DIR``
(``DIR/train/<class>/*`` or ``DIR/<class>/*``), ``synthetic[:N]`` (generated, no files), or
the name of a dataset recipe in ``jobs/datasets/`` (e.g. ``cifar10``) that adds the
resolution list, normalisation and ``small_input`` and points at a path relative to the
repository's parent (``shared/data/cifar10`` -> ``../shared/data/cifar10``).

:func:`load_dataset` returns :class:`DatasetSplits`: ``.train`` and ``.val`` are torch
Datasets of ``(uint8 CHW tensor, int label)``; the validation split is held out of the
training rows with a seeded permutation, so it is the same on every worker and every run
with the same seed. Small sets (Parquet, synthetic) are decoded once into one uint8 tensor,
so :func:`iterate_batches` crops, flips, resizes and normalises whole batches with tensor ops;
ImageFolder trees stay on disk and are decoded per batch (optionally in DataLoader workers).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ofa_platform.errors import UserError
from ofa_platform.paths import jobs_dir, project_root

# EVAL_SPLITS: ``val`` is held out of the training rows (what a search may select on);
# ``test`` is the dataset's own test split, whole (what a study reports, never selects on)
from ofa_platform.train.request import EVAL_SPLITS

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "DataSpec", "TensorImageDataset", "ImageFileDataset",
    "DatasetSplits", "default_datasets_dir", "list_dataset_recipes", "parse_data_spec",
    "load_dataset", "train_size", "make_synthetic", "iterate_batches", "check_parquet_content",
    "MAX_CLASSES", "RECIPE_METADATA_KEY", "recipe_metadata", "parquet_spec", "describe_spec",
    "infer_resolutions", "load_test_split", "test_split_rows", "EVAL_SPLITS",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_KINDS = ("parquet", "imagefolder", "synthetic")
#: More classes than any public classification set (ImageNet-21k: 21,841). A label beyond it
#: in a file that declares no classes is a broken label, not a class: it would build a
#: classifier head of that many rows.
MAX_CLASSES = 100_000
_RECIPE_KEYS = {"name", "description", "kind", "path", "n", "resolutions", "mean", "std",
                "small_input", "n_classes", "image_size"}


def default_datasets_dir() -> Path:
    """``jobs/datasets/`` of this checkout (the package is installed editable)."""
    return jobs_dir("datasets")


def _mix(*values: int) -> int:
    """A 63-bit seed from integers, identical in every process (no ``hash()`` salt)."""
    digest = hashlib.sha256(":".join(str(int(v)) for v in values).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


# --------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class DataSpec:
    """Where the images are and how to present them. ``resolutions`` / ``mean`` / ``std`` /
    ``small_input`` come from a recipe; ``None`` resolutions mean "decide when loading"
    (the native size for Parquet and synthetic, ImageNet's 128..224 for ImageFolder)."""

    kind: str
    path: Path | None = None
    n: int | None = None
    name: str = ""
    resolutions: tuple[int, ...] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    small_input: bool = False
    n_classes: int | None = None
    image_size: int = 32
    uri: str | None = None  # a remote Parquet dataset (``s3://...``); ``path`` is then None
    origin: str = ""  # where resolutions/normalisation/stem came from, for the run's log


def list_dataset_recipes(datasets_dir: str | Path | None = None) -> list[str]:
    d = Path(datasets_dir) if datasets_dir is not None else default_datasets_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def _parse_resolutions(value: Any, where: str) -> tuple[int, ...]:
    from search_spaces.space import parse_resolutions

    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, list) and value and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return tuple(sorted(set(value)))
    if isinstance(value, str):
        try:
            res = parse_resolutions(value)
        except ValueError as exc:
            raise UserError(f"{where}: {exc}") from None
        if res and min(res) > 0:
            return res
    raise UserError(f"{where}: resolutions {value!r}: expected 'LO-HI:STEP', a list or an int")


def _load_recipe(path: Path) -> DataSpec:
    import yaml

    where = f"dataset recipe {path}"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{where}: cannot read ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping")
    from ofa_platform.configs import ConfigReader

    r = ConfigReader()
    r.unknown(data, _RECIPE_KEYS, "")
    kind = r.get(data, "kind", "str", "", required=True, choices=_KINDS)
    if kind in ("parquet", "imagefolder") and data.get("path") is None:
        r.errors.append("path: missing (relative to the repository's parent directory)")
    else:
        r.get(data, "path", "str", "")
    for key in ("mean", "std"):
        v = data.get(key)
        if v is not None and not (isinstance(v, list) and len(v) == 3 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
            r.errors.append(f"{key}: expected three numbers")
    for key in ("n", "n_classes", "image_size"):
        r.get(data, key, "int", "", positive=True)
    r.get(data, "small_input", "bool", "")
    r.get(data, "name", "str", "")
    r.get(data, "description", "str", "")
    r.finish(where)
    rel = data.get("path")
    if kind == "parquet" and rel and "://" in rel:  # a remote dataset (s3://...), read by pyarrow
        return replace(_load_recipe_local(data, path, where, None), uri=rel)
    return _load_recipe_local(data, path, where, rel)


def _load_recipe_local(data: dict[str, Any], path: Path, where: str,
                       rel: str | None) -> DataSpec:
    kind = data["kind"]
    return DataSpec(
        kind=kind, name=str(data.get("name", path.stem)),
        path=(project_root().parent / rel) if rel else None,
        n=data.get("n"),
        resolutions=(_parse_resolutions(data["resolutions"], where)
                     if data.get("resolutions") is not None else None),
        mean=tuple(float(x) for x in data.get("mean", IMAGENET_MEAN)),
        std=tuple(float(x) for x in data.get("std", IMAGENET_STD)),
        small_input=bool(data.get("small_input", False)),
        n_classes=data.get("n_classes"), image_size=data.get("image_size", 32),
        origin=f"recipe {path.name}",
    )


def parse_data_spec(text: str, datasets_dir: str | Path | None = None) -> DataSpec:
    """Read a data spec string (see the module docstring). Unknown forms are ``UserError``;
    whether the path exists is checked by :func:`load_dataset`."""
    if isinstance(text, DataSpec):
        return text
    text = str(text).strip()
    kind, sep, rest = text.partition(":")
    if kind == "synthetic":
        if not sep:
            return DataSpec(kind="synthetic", name="synthetic", small_input=True,
                            mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        try:
            n = int(rest)
            if n < 2:
                raise ValueError
        except ValueError:
            raise UserError(f"data {text!r}: synthetic:N needs an integer N >= 2") from None
        return DataSpec(kind="synthetic", n=n, name="synthetic", small_input=True,
                        mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    if sep and kind in ("parquet", "imagefolder"):
        if not rest:
            raise UserError(f"data {text!r}: {kind}: needs a directory")
        if kind == "parquet" and "://" in rest:
            return DataSpec(kind="parquet", uri=rest, name=rest.rstrip("/").rsplit("/", 1)[-1])
        path = Path(rest).expanduser().resolve()
        if kind == "parquet":
            return parquet_spec(path)
        return DataSpec(kind=kind, path=path, name=path.name)
    d = Path(datasets_dir) if datasets_dir is not None else default_datasets_dir()
    recipe = Path(text) if text.endswith((".yaml", ".yml")) else d / f"{text}.yaml"
    if recipe.is_file():
        return _load_recipe(recipe)
    known = ", ".join(list_dataset_recipes(d)) or "none"
    raise UserError(f"data {text!r}: expected parquet:DIR, imagefolder:DIR, synthetic[:N] or a "
                    f"dataset recipe ({known})")


# --------------------------------------------------------------------------- Parquet recipes
#: Schema-metadata key of a Parquet dataset's recipe (JSON: resolutions, mean, std,
#: small_input, image_size, n_classes), written by ``data convert`` via :func:`recipe_metadata`.
RECIPE_METADATA_KEY = b"ofa.recipe"
_STATS_ROWS = 1024  # images whose pixels estimate mean/std when the file carries no recipe
_SMALL_INPUT_MAX = 64  # at most this many pixels a side, the stem keeps the size (CIFAR)


def recipe_metadata(*, resolutions: Sequence[int], mean: Sequence[float],
                    std: Sequence[float], small_input: bool, image_size: int,
                    classes: Sequence[str] = ()) -> dict[bytes, bytes]:
    """Schema metadata that makes ``parquet:DIR`` train exactly like a named recipe.

    A writer (``ofa-platform data convert``) merges it into the table's schema metadata
    (``table.replace_schema_metadata({**old, **recipe_metadata(...)})``); ``classes`` keeps
    the comma-separated ``classes`` key the reference CIFAR-10 file already uses.
    """
    import json

    recipe = {"resolutions": sorted({int(r) for r in resolutions}),
              "mean": [float(x) for x in mean], "std": [float(x) for x in std],
              "small_input": bool(small_input), "image_size": int(image_size)}
    if len(recipe["mean"]) != 3 or len(recipe["std"]) != 3 or not recipe["resolutions"]:
        raise ValueError("a recipe needs resolutions and three mean and std values")
    out = {RECIPE_METADATA_KEY: json.dumps(recipe).encode()}
    if classes:
        out[b"classes"] = ",".join(classes).encode()
        recipe["n_classes"] = len(classes)
        out[RECIPE_METADATA_KEY] = json.dumps(recipe).encode()
    return out


def infer_resolutions(image_size: int) -> tuple[int, ...]:
    """Training resolutions for images of ``image_size`` pixels when no recipe says.

    Small images (CIFAR): 3/4 of the size up to the size, step 4, as the ``cifar10`` recipe
    samples 24..32 for 32-px images. Large images: OFA's ImageNet range 128..224 step 4
    (Cai et al. 2020, sec. 3.2), capped at the native size.
    """
    if image_size <= _SMALL_INPUT_MAX:
        lo = max(4, int(math.ceil(image_size * 0.75 / 4)) * 4)
        return tuple(range(lo, image_size + 1, 4)) if image_size % 4 == 0 else (image_size,)
    top = min(224, image_size)
    return tuple(range(128, top + 1, 4)) if top >= 128 else (image_size,)


def parquet_spec(path: Path, name: str = "") -> DataSpec:
    """The spec of ``parquet:DIR``: the recipe in the file's schema metadata, else one
    inferred from the data (image size from the first image, mean/std from the first
    ``_STATS_ROWS`` images, 128 when they are large; small-input stem for images up to
    64 px), so a path trains as its recipe name does. A path that cannot be read yet keeps
    the defaults: loading it reports the problem."""
    import json

    import pyarrow.parquet as pq

    file = path if path.is_file() else path / "train.parquet"
    name = name or path.name
    try:
        pf = pq.ParquetFile(file)
    except Exception:  # noqa: BLE001 - load_dataset names the missing or bad file
        return DataSpec(kind="parquet", path=path, name=name)
    meta = pf.schema_arrow.metadata or {}
    if RECIPE_METADATA_KEY in meta:
        try:
            r = json.loads(meta[RECIPE_METADATA_KEY])
            return DataSpec(
                kind="parquet", path=path, name=name,
                resolutions=_parse_resolutions(r["resolutions"], f"parquet {file} recipe"),
                mean=tuple(float(x) for x in r["mean"]), std=tuple(float(x) for x in r["std"]),
                small_input=bool(r["small_input"]), n_classes=r.get("n_classes"),
                image_size=int(r["image_size"]), origin=f"recipe in {file.name}'s metadata")
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"parquet {file}: bad {RECIPE_METADATA_KEY.decode()} metadata "
                            f"({type(exc).__name__}: {exc})") from None
    if "image" not in pf.schema_arrow.names or pf.metadata.num_rows == 0:
        return DataSpec(kind="parquet", path=path, name=name)
    check_parquet_content(file)  # null or undecodable images: one line naming the row
    blobs = pf.read_row_group(0, columns=["image"]).column("image").to_pylist()[:_STATS_ROWS]
    first = _decode_all(blobs[:1], f"parquet {file}")
    if first.shape[-1] > _SMALL_INPUT_MAX:  # large images: 128 of them hold pixels enough
        blobs = blobs[:128]
    pixels = _decode_all(blobs, f"parquet {file}").float().div_(255.0)
    size = int(pixels.shape[-1])
    mean = tuple(round(float(v), 4) for v in pixels.mean(dim=(0, 2, 3)))
    std = tuple(round(float(v), 4) for v in pixels.std(dim=(0, 2, 3)))
    return DataSpec(kind="parquet", path=path, name=name, resolutions=infer_resolutions(size),
                    mean=mean, std=std, small_input=size <= _SMALL_INPUT_MAX, image_size=size,
                    origin=f"inferred from {len(blobs)} images of {file.name}")


def describe_spec(spec: DataSpec) -> dict[str, str]:
    """What a run trains with, as MLflow params and the run's first line: resolutions,
    normalisation, stem and where they came from."""
    res = spec.resolutions
    return {"data_resolutions": ",".join(map(str, res)) if res else "native",
            "data_mean": ",".join(f"{x:g}" for x in spec.mean),
            "data_std": ",".join(f"{x:g}" for x in spec.std),
            "data_small_input": str(spec.small_input),
            "data_recipe": spec.origin or (f"recipe {spec.name}" if spec.name else "defaults")}


# --------------------------------------------------------------------------- datasets
class TensorImageDataset(Dataset):
    """Images held in memory as one ``uint8`` tensor ``N x 3 x H x W`` with ``int64`` labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise ValueError("images must be uint8 N x C x H x W with one label each")
        self.images, self.labels = images, labels.to(torch.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


class ImageFileDataset(Dataset):
    """Image files decoded on access (ImageFolder trees): RGB ``uint8`` CHW, native size."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int]) -> None:
        self.paths, self.labels = list(paths), torch.as_tensor(list(labels), dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from torchvision.io import ImageReadMode, decode_image, read_file

        img = decode_image(read_file(str(self.paths[i])), mode=ImageReadMode.RGB)
        return img, int(self.labels[i])


@dataclass(frozen=True)
class DatasetSplits:
    """A loaded dataset: training and held-out validation splits (and a test split if the
    source has one), with what the engine needs to build and feed a supernet."""

    name: str
    train: Dataset
    val: Dataset
    classes: tuple[str, ...]
    resolutions: tuple[int, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    small_input: bool = False
    test: Dataset | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_val(self) -> int:
        return len(self.val)


def _split(n: int, val_fraction: float, seed: int,
           heads: tuple[int | None, int | None] | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train, val) index split; at least one of each when ``n >= 2``. ``heads`` keeps
    only the first indices of each (``None``: all of that split)."""
    if not 0 <= val_fraction < 1:
        raise UserError(f"val_fraction {val_fraction}: expected a number in [0, 1)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(_mix(seed, 0x5B1)))
    n_val = min(n - 1, max(1, round(n * val_fraction))) if val_fraction > 0 and n >= 2 else 0
    tr, va = perm[n_val:].sort().values, perm[:n_val].sort().values
    if heads is not None:
        n_tr, n_va = heads
        tr = tr if n_tr is None else tr[:n_tr]
        va = va if n_va is None else va[:n_va]
    return tr, va


def _decode_all(blobs: Sequence[bytes], where: str) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image, decode_jpeg

    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    try:
        images = decode_jpeg(tensors, mode=ImageReadMode.RGB)
    except RuntimeError:  # not all JPEG (PNG, ...): decode one by one
        try:
            images = [decode_image(t, mode=ImageReadMode.RGB) for t in tensors]
        except RuntimeError as exc:
            raise UserError(f"{where}: cannot decode an image ({exc})") from None
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) != 1:
        raise UserError(f"{where}: images of different sizes {sorted(shapes)[:3]}; use "
                        "imagefolder: or resize them first")
    return torch.stack(images)


def _read_parquet_rows(path: Path, limit: int | None) -> tuple[list[bytes], torch.Tensor,
                                                                 list[str]]:
    """The encoded images, labels and class names of a Parquet file (nothing decoded yet)."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise UserError(f"parquet {path}: cannot read ({type(exc).__name__})") from None
    names = set(pf.schema_arrow.names)
    if not {"image", "label"} <= names:
        raise UserError(f"parquet {path}: needs columns 'image' and 'label', has "
                        f"{sorted(names)}")
    blobs: list[bytes] = []
    labels: list[int] = []
    for rg in range(pf.metadata.num_row_groups):
        t = pf.read_row_group(rg, columns=["image", "label"])
        blobs.extend(t.column("image").to_pylist())
        labels.extend(t.column("label").to_pylist())
        if limit is not None and len(blobs) >= limit:
            break
    if limit is not None:
        blobs, labels = blobs[:limit], labels[:limit]
    if not blobs:
        raise UserError(f"parquet {path}: no rows")
    meta = pf.schema_arrow.metadata or {}
    classes = meta.get(b"classes", b"").decode().split(",") if b"classes" in meta else []
    return blobs, torch.as_tensor(labels, dtype=torch.int64), classes


def _first_row(mask: Any) -> int:
    import numpy as np

    return int(np.flatnonzero(np.asarray(mask))[0])


def check_parquet_content(path: str | Path, n_classes: int | None = None,
                          image_sample: int = 8) -> None:
    """Refuse a Parquet file whose content would crash or silently mislead training.

    Checked before Ray starts (a bad row used to end in 100 lines from crashing workers):
    the ``label`` column holds integers, no nulls, none negative, none beyond the declared
    classes (``n_classes``, else the ``classes`` metadata, else :data:`MAX_CLASSES`); the
    ``image`` column holds bytes, none null or empty; and a sample of ``image_sample``
    images spread over the first row group decodes. Each error names file, column and row.
    Only the label column is read whole; images come from statistics and one row group.
    """
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"parquet {path}: cannot read ({type(exc).__name__})") from None
    _check_columns(path, pf.schema_arrow)
    _check_labels(path, pf, n_classes)
    _check_images_present(path, pf)
    if pf.metadata.num_row_groups == 0 or image_sample < 1:
        return
    first = pf.read_row_group(0, columns=["image"]).column("image").to_pylist()
    picks = sorted({round(i * (len(first) - 1) / max(image_sample - 1, 1))
                    for i in range(min(image_sample, len(first)))})
    _check_decodes(path, [(i, first[i]) for i in picks])


def _check_columns(path: Path, schema: Any) -> None:
    """An ``image`` column of bytes and an integer ``label`` column."""
    import pyarrow as pa

    missing = [c for c in ("image", "label") if c not in schema.names]
    if missing:
        raise UserError(f"parquet {path}: needs columns 'image' and 'label', has "
                        f"{sorted(schema.names)}")
    label_type = schema.field("label").type
    if not pa.types.is_integer(label_type):
        kind = "float" if pa.types.is_floating(label_type) else str(label_type)
        raise UserError(f"parquet {path}: column 'label' holds {kind} values; class labels "
                        "must be integers 0..classes-1")
    image_type = schema.field("image").type
    if not (pa.types.is_binary(image_type) or pa.types.is_large_binary(image_type)):
        raise UserError(f"parquet {path}: column 'image' holds {image_type}, expected encoded "
                        "image bytes (binary)")


def _check_labels(path: Path, pf: Any, n_classes: int | None) -> None:
    """No null or negative label, none beyond the declared classes (``n_classes``, else the
    file's ``classes`` metadata, else :data:`MAX_CLASSES`); the first bad row named."""
    import numpy as np
    import pyarrow.compute as pc

    labels = pf.read(columns=["label"]).column("label")
    if labels.null_count:
        row = _first_row(pc.is_null(labels).to_numpy(zero_copy_only=False))
        raise UserError(f"parquet {path}: column 'label' is null at row {row}")
    values = labels.to_numpy()
    if not values.size:
        return
    if values.min() < 0:
        row = int(np.argmax(values < 0))
        raise UserError(f"parquet {path}: column 'label' is {int(values[row])} at row "
                        f"{row}; labels must be >= 0")
    meta = pf.schema_arrow.metadata or {}
    if n_classes is not None:
        limit, where = n_classes, "classes given"
    elif b"classes" in meta:
        limit, where = len(meta[b"classes"].decode().split(",")), "classes in the file's metadata"
    else:
        limit = MAX_CLASSES
        where = "classes any dataset has (no classes declared in the file's metadata)"
    if values.max() >= limit:
        row = int(np.argmax(values >= limit))
        raise UserError(f"parquet {path}: column 'label' is {int(values[row])} at row {row}; "
                        f"beyond the {limit:,} {where}")


def _check_images_present(path: Path, pf: Any) -> None:
    """No null image: read from the row groups' statistics, a group read only when its
    statistics do not say."""
    import pyarrow.compute as pc

    offset = 0
    image = pf.schema_arrow.get_field_index("image")
    for rg in range(pf.metadata.num_row_groups):
        stats = pf.metadata.row_group(rg).column(image).statistics
        if stats is None or not stats.has_null_count or stats.null_count:
            images = pf.read_row_group(rg, columns=["image"]).column("image")
            if images.null_count:
                row = _first_row(pc.is_null(images).to_numpy(zero_copy_only=False))
                raise UserError(f"parquet {path}: column 'image' is null at row {offset + row}")
        offset += pf.metadata.row_group(rg).num_rows


def _check_decodes(path: Path, rows: Sequence[tuple[int, bytes | None]]) -> None:
    from torchvision.io import ImageReadMode, decode_image

    for row, blob in rows:
        if not blob:
            raise UserError(f"parquet {path}: column 'image' is empty at row {row}")
        try:
            decode_image(torch.frombuffer(bytearray(blob), dtype=torch.uint8),
                         mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"parquet {path}: column 'image' at row {row} is not a decodable "
                            f"image ({first[:120]})") from None


def _load_parquet(spec: DataSpec, subset: int | None, val_fraction: float, seed: int,
                  heads: tuple[int | None, int | None] | None) -> DatasetSplits:
    root = spec.path
    assert root is not None
    if not root.exists():
        raise UserError(f"dataset path {root} does not exist")
    train_file = root if root.is_file() else root / "train.parquet"
    if not train_file.is_file():
        raise UserError(f"dataset path {root}: no train.parquet in it")
    check_parquet_content(train_file, spec.n_classes)
    blobs, labels, classes = _read_parquet_rows(train_file, subset)
    n_classes = spec.n_classes or max(len(classes), int(labels.max()) + 1)
    if len(classes) != n_classes:
        classes = [str(i) for i in range(n_classes)]
    tr, va = _split(len(labels), val_fraction, seed, heads)
    where = f"parquet {train_file}"
    train = TensorImageDataset(_decode_all([blobs[i] for i in tr.tolist()], where), labels[tr])
    test = None
    test_file = root / "test.parquet" if root.is_dir() else None
    if heads is None and test_file is not None and test_file.is_file():
        check_parquet_content(test_file, len(classes))
        t_blobs, t_labels, _ = _read_parquet_rows(test_file, subset)
        test = TensorImageDataset(_decode_all(t_blobs, f"parquet {test_file}"), t_labels)
    return DatasetSplits(
        name=spec.name or root.name, train=train,
        val=TensorImageDataset(_decode_all([blobs[i] for i in va.tolist()], where), labels[va]),
        classes=tuple(classes), resolutions=spec.resolutions or (int(train.images.shape[-1]),),
        mean=spec.mean, std=spec.std, small_input=spec.small_input, test=test,
        meta={"source": str(train_file)})


def _folder_items(root: Path) -> tuple[list[Path], list[int], list[str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths, labels = [], []
    for i, c in enumerate(classes):
        files = sorted(p for p in (root / c).rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
        paths.extend(files)
        labels.extend([i] * len(files))
    return paths, labels, classes


def _load_imagefolder(spec: DataSpec, subset: int | None, val_fraction: float, seed: int,
                      heads: tuple[int | None, int | None] | None) -> DatasetSplits:
    root = spec.path
    assert root is not None
    if not root.is_dir():
        raise UserError(f"dataset path {root} does not exist or is not a directory")
    train_root = root / "train" if (root / "train").is_dir() else root
    paths, labels, classes = _folder_items(train_root)
    if not paths:
        raise UserError(f"imagefolder {train_root}: no images in class subdirectories")
    if subset is not None and subset < len(paths):
        keep = torch.randperm(len(paths), generator=torch.Generator().manual_seed(
            _mix(seed, 0x50B)))[:subset].sort().values.tolist()
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
    tr, va = _split(len(paths), val_fraction, seed, heads)
    test = None
    if heads is None and train_root != root and (root / "val").is_dir():
        t_paths, t_labels, t_classes = _folder_items(root / "val")
        if t_classes == classes:
            test = ImageFileDataset(t_paths, t_labels)
    return DatasetSplits(
        name=spec.name or root.name,
        train=ImageFileDataset([paths[i] for i in tr], [labels[i] for i in tr]),
        val=ImageFileDataset([paths[i] for i in va], [labels[i] for i in va]),
        classes=tuple(classes), resolutions=spec.resolutions or tuple(range(128, 225, 4)),
        mean=spec.mean, std=spec.std, small_input=spec.small_input, test=test,
        meta={"source": str(train_root)})


def make_synthetic(n: int, *, n_classes: int = 10, size: int = 32,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` generated images (uint8 ``n x 3 x size x size``) and balanced labels.

    Each class has its own colour and its own sinusoidal grating (frequency and orientation
    drawn from ``seed``); each image adds a random phase, brightness jitter and noise. The
    class is visible in colour statistics and texture, both of which survive crops and
    flips, so a small network learns it well above chance within a few epochs.
    """
    g = torch.Generator().manual_seed(_mix(seed, 0x5E7))
    colours = torch.rand(n_classes, 3, generator=g) * 0.6 + 0.2
    freqs = torch.linspace(1.0, 4.0, n_classes)[torch.randperm(n_classes, generator=g)]
    angles = torch.rand(n_classes, generator=g) * math.pi / 2
    labels = torch.arange(n) % n_classes
    labels = labels[torch.randperm(n, generator=g)]
    coords = torch.linspace(0, 2 * math.pi, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    a, f = angles[labels][:, None, None], freqs[labels][:, None, None]
    phase = torch.rand(n, 1, 1, generator=g) * 2 * math.pi
    wave = torch.sin(f * (xx * torch.cos(a) + yy * torch.sin(a)) + phase)  # n x H x W
    img = colours[labels][:, :, None, None] * (0.75 + 0.25 * wave[:, None])
    img = img * (0.85 + 0.3 * torch.rand(n, 1, 1, 1, generator=g))
    img = img + 0.05 * torch.randn(img.shape, generator=g)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8), labels


def _load_synthetic(spec: DataSpec, subset: int | None, val_fraction: float, seed: int,
                    heads: tuple[int | None, int | None] | None) -> DatasetSplits:
    n = spec.n or 2048
    if subset is not None:
        n = min(n, subset)
    n_classes = spec.n_classes or 10
    if n < 2:
        raise UserError(f"synthetic data needs at least 2 images, got {n}")
    images, labels = make_synthetic(n, n_classes=n_classes, size=spec.image_size, seed=seed)
    test = None
    if heads is None:
        test = TensorImageDataset(*make_synthetic(max(n // 5, n_classes), n_classes=n_classes,
                                                  size=spec.image_size, seed=seed + 1))
    tr, va = _split(n, val_fraction, seed, heads)
    return DatasetSplits(
        name=spec.name or "synthetic", train=TensorImageDataset(images[tr], labels[tr]),
        val=TensorImageDataset(images[va], labels[va]),
        classes=tuple(f"class{i}" for i in range(n_classes)),
        resolutions=spec.resolutions or (spec.image_size,), mean=spec.mean, std=spec.std,
        small_input=spec.small_input, test=test, meta={"source": f"synthetic:{n} seed {seed}"})


def load_dataset(spec: DataSpec | str, *, subset: int | None = None, val_fraction: float = 0.1,
                 seed: int = 0, heads: tuple[int | None, int | None] | None = None
                 ) -> DatasetSplits:
    """Load a dataset with a validation split held out of its training rows.

    ``subset`` keeps only that many training rows (Parquet: the first rows, which are
    shuffled in the reference data; ImageFolder: a seeded sample; synthetic: ``N``) before
    the split, for smoke runs. ``seed`` fixes the split (and the synthetic images): the same
    seed gives the same split everywhere. ``heads=(n_train, n_val)`` keeps only the first
    rows of each split (``None``: all of that split) and no test split, decoding nothing
    else: evaluating a subnet needs a calibration and a validation subset, and decoding a
    whole Parquet dataset in every evaluation actor cost seconds per population. The kept
    rows are exactly the first rows of the full load's splits. A missing path is a
    ``UserError`` naming it.
    """
    spec = parse_data_spec(spec) if isinstance(spec, str) else spec
    if subset is not None and subset < 2:
        raise UserError(f"subset {subset}: need at least 2 images")
    if heads is not None and any(k is not None and k < 1 for k in heads):
        raise UserError(f"heads {heads}: keep at least 1 row of each split (or None: all)")
    if spec.kind == "parquet" and _sharded(spec):
        from ofa_platform.data.shards import load_sharded

        return load_sharded(spec, subset, val_fraction, seed, heads)
    loader = {"parquet": _load_parquet, "imagefolder": _load_imagefolder,
              "synthetic": _load_synthetic}[spec.kind]
    return loader(spec, subset, val_fraction, seed, heads)


def _sharded(spec: DataSpec) -> bool:
    """Parquet in ``train/*.parquet`` shards or at a URI: read by ``ofa_platform.data``."""
    from ofa_platform.data.shards import is_sharded

    return spec.uri is not None or (spec.path is not None and is_sharded(spec.path))


def load_test_split(spec: DataSpec | str, limit: int | None = None) -> TensorImageDataset:
    """The dataset's test split, whole (or its first ``limit`` rows), whatever training subset
    a run uses: a study scores every subnet on the same images. Only Parquet datasets with a
    ``test.parquet`` beside ``train.parquet`` have one; anything else is a ``UserError``."""
    spec = parse_data_spec(spec) if isinstance(spec, str) else spec
    test_file = _test_file(spec)
    check_parquet_content(test_file, spec.n_classes)
    blobs, labels, _ = _read_parquet_rows(test_file, limit)
    return TensorImageDataset(_decode_all(blobs, f"parquet {test_file}"), labels)


def test_split_rows(spec: DataSpec | str, limit: int | None = None) -> int:
    """Images in the test split (at most ``limit``), from the file footer: nothing decoded.
    No test split is the same ``UserError`` as :func:`load_test_split`'s."""
    import pyarrow.parquet as pq

    spec = parse_data_spec(spec) if isinstance(spec, str) else spec
    n = pq.ParquetFile(_test_file(spec)).metadata.num_rows
    return min(n, limit) if limit else n


def _test_file(spec: DataSpec) -> Path:
    root = spec.path
    test_file = root / "test.parquet" if spec.kind == "parquet" and root is not None else None
    if test_file is None or not test_file.is_file():
        raise UserError(f"dataset {spec.name or spec.path}: no test split (a test.parquet "
                        "beside train.parquet); evaluate on 'val' instead")
    return test_file


def train_size(spec: DataSpec | str, *, val_fraction: float = 0.1, seed: int = 0) -> int:
    """How many training images :func:`load_dataset` would give without a subset, read from
    Parquet metadata or a directory listing, without decoding anything (projections of a
    full recipe's cost from a smoke run need it)."""
    spec = parse_data_spec(spec) if isinstance(spec, str) else spec
    if spec.kind == "synthetic":
        n = spec.n or 2048
    elif spec.kind == "parquet" and _sharded(spec):
        from ofa_platform.data.shards import describe

        n = describe(spec.uri or str(spec.path)).n_train_rows
    elif spec.kind == "parquet":
        import pyarrow.parquet as pq

        assert spec.path is not None
        f = spec.path if spec.path.is_file() else spec.path / "train.parquet"
        if not f.is_file():
            raise UserError(f"dataset path {spec.path} does not exist or has no train.parquet")
        n = pq.ParquetFile(f).metadata.num_rows
    else:
        assert spec.path is not None
        if not spec.path.is_dir():
            raise UserError(f"dataset path {spec.path} does not exist or is not a directory")
        root = spec.path / "train" if (spec.path / "train").is_dir() else spec.path
        n = len(_folder_items(root)[0])
    return len(_split(n, val_fraction, seed)[0])


# --------------------------------------------------------------------------- batches
def _normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1) * 255.0
    return x.float().sub_(m).div_(s)


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    if x.shape[-1] == resolution and x.shape[-2] == resolution:
        return x
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear",
                         align_corners=False, antialias=True)


def _pad_crop_flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per-image random crop from a zero-padded copy (pad = size/8) and horizontal flip,
    vectorised as one ``gather`` over the flattened pixels (the flip is folded into the
    column index); the CIFAR augmentation of OFA-style training."""
    n, c, h, w = x.shape
    pad = max(1, h // 8)
    hp, wp = h + 2 * pad, w + 2 * pad
    padded = F.pad(x, (pad, pad, pad, pad)).reshape(n, c, hp * wp)
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=g)  # CPU generator: same draws on
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=g)  # any device
    flip = torch.rand(n, generator=g) < 0.5
    j = torch.arange(w)
    cols = torch.where(flip[:, None], ox[:, None] + (w - 1 - j), ox[:, None] + j)
    rows = oy[:, None] + torch.arange(h)
    flat = (rows[:, :, None] * wp + cols[:, None, :]).reshape(n, 1, h * w).to(x.device)
    flat = flat.expand(n, c, h * w)
    return torch.gather(padded, 2, flat).reshape(n, c, h, w)


def _order(n: int, *, train: bool, seed: int, epoch: int, rank: int,
           world_size: int) -> torch.Tensor:
    """This rank's sample indices: a permutation shared by all ranks (seeded by seed and
    epoch), then every ``world_size``-th element from ``rank``, truncated so every rank has
    the same count (DDP ranks must run the same number of steps)."""
    if train:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(_mix(seed, epoch)))
    else:
        idx = torch.arange(n)
    per_rank = n // world_size if train else math.ceil(n / world_size)
    return idx[rank::world_size][:per_rank]


def _batch_slices(count: int, batch_size: int, train: bool) -> list[tuple[int, int]]:
    if train:
        full = count // batch_size
        if full == 0:
            return [(0, count)] if count else []
        return [(i * batch_size, (i + 1) * batch_size) for i in range(full)]
    return [(i, min(i + batch_size, count)) for i in range(0, count, batch_size)]


class _FileBatch:
    """Collate for on-disk images: decode, crop to ``resolution``, stack (picklable)."""

    def __init__(self, ds: ImageFileDataset, resolution: int, train: bool, seed: int) -> None:
        self.ds, self.resolution, self.train, self.seed = ds, resolution, train, seed

    def __call__(self, batch: list[tuple[int, list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        key, indices = batch[0]
        g = torch.Generator().manual_seed(_mix(self.seed, key))
        r = self.resolution
        out = []
        for i in indices:
            img, _ = self.ds[i]
            h, w = img.shape[-2:]
            if self.train:  # random-resized crop (scale 0.08..1, ratio 3/4..4/3) and flip
                area = h * w * (0.08 + 0.92 * float(torch.rand(1, generator=g)))
                u = float(torch.rand(1, generator=g))
                ratio = math.exp(math.log(3 / 4) + math.log(16 / 9) * u)
                cw = min(w, max(1, round(math.sqrt(area * ratio))))
                ch = min(h, max(1, round(math.sqrt(area / ratio))))
                y0 = int(torch.randint(0, h - ch + 1, (1,), generator=g))
                x0 = int(torch.randint(0, w - cw + 1, (1,), generator=g))
                crop = img[:, y0:y0 + ch, x0:x0 + cw]
                if float(torch.rand(1, generator=g)) < 0.5:
                    crop = crop.flip(-1)
            else:  # resize the shorter side to r / 0.875, centre crop r
                s = round(r / 0.875) / min(h, w)
                img = _resize_hw(img, max(r, round(h * s)), max(r, round(w * s)))
                h, w = img.shape[-2:]
                crop = img[:, (h - r) // 2:(h - r) // 2 + r, (w - r) // 2:(w - r) // 2 + r]
            out.append(_resize_hw(crop, r, r))
        return torch.stack(out), self.ds.labels[indices]


def _resize_hw(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if img.shape[-2:] == (h, w):
        return img
    y = F.interpolate(img[None].float(), size=(h, w), mode="bilinear", align_corners=False,
                      antialias=True)[0]
    return y.round().clamp(0, 255).to(torch.uint8)


def iterate_batches(dataset: DatasetSplits | Dataset, *, batch_size: int, resolution: int,
                    train: bool, seed: int, epoch: int, rank: int = 0, world_size: int = 1,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    num_workers: int = 0, device: torch.device | str | None = None,
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Float, normalised ``N x 3 x resolution x resolution`` batches and int64 labels.

    ``dataset`` is a :class:`DatasetSplits` (``train`` picks its train or val split and its
    mean/std) or one split. Training: shuffled per epoch (the same permutation on every
    rank), sharded by ``rank``, augmented with seeded random crops and flips, full batches
    only, but at least one (possibly short) batch per rank, so an epoch always has a step.
    Evaluation: in order, no augmentation, every sample once across ranks.
    In-memory splits are processed as whole-batch tensor ops; with ``device`` (e.g. the
    worker's GPU) the uint8 batch moves there first (4x fewer bytes than floats) and the
    crop, flip, resize and normalisation run on it, so the CPU is not the bottleneck; the
    random draws stay on a CPU generator, so results do not depend on the device. On-disk
    splits decode per batch, in ``num_workers`` DataLoader processes when asked, and are
    moved to ``device`` at the end.
    """
    if isinstance(dataset, DatasetSplits):
        mean = mean or dataset.mean
        std = std or dataset.std
        split = dataset.train if train else dataset.val
    else:
        split = dataset
    mean, std = mean or IMAGENET_MEAN, std or IMAGENET_STD
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    idx = _order(len(split), train=train, seed=seed, epoch=epoch, rank=rank,
                 world_size=world_size)
    slices = _batch_slices(len(idx), batch_size, train)
    keys = (seed, epoch, rank)
    if isinstance(split, TensorImageDataset):
        yield from _tensor_batches(split, idx, slices, keys, resolution, train, mean, std, device)
    elif isinstance(split, ImageFileDataset):
        yield from _file_batches(split, idx, slices, keys, resolution, train, mean, std, device,
                                 num_workers)
    else:
        yield from _item_batches(split, idx, slices, keys, resolution, train, mean, std)


_Slices = Sequence[tuple[int, int]]


def _tensor_batches(split: TensorImageDataset, idx: torch.Tensor, slices: _Slices,
                    keys: tuple[int, int, int], resolution: int, train: bool,
                    mean: Sequence[float], std: Sequence[float],
                    device: torch.device | str | None
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """In-memory images as whole-batch tensor ops, on ``device`` when given."""
    g = torch.Generator().manual_seed(_mix(*keys, 0xA06))
    for a, b in slices:
        sel = idx[a:b]
        x = split.images[sel]
        if device is not None:
            x = x.to(device, non_blocking=True)
        if train:
            x = _pad_crop_flip(x, g)
        y = split.labels[sel]
        yield _resize(_normalise(x, mean, std), resolution), (
            y if device is None else y.to(device, non_blocking=True))


def _file_batches(split: ImageFileDataset, idx: torch.Tensor, slices: _Slices,
                  keys: tuple[int, int, int], resolution: int, train: bool,
                  mean: Sequence[float], std: Sequence[float],
                  device: torch.device | str | None, num_workers: int
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Image files decoded a batch at a time, in ``num_workers`` DataLoader processes."""
    from torch.utils.data import DataLoader

    collate = _FileBatch(split, resolution, train, keys[0])
    jobs = [(_mix(*keys, k), idx[a:b].tolist()) for k, (a, b) in enumerate(slices)]
    loader = DataLoader(jobs, batch_size=1, shuffle=False, collate_fn=collate,
                        num_workers=num_workers, persistent_workers=False)
    for x, y in loader:
        if device is not None:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        yield _normalise(x, mean, std), y


def _item_batches(split: Dataset, idx: torch.Tensor, slices: _Slices,
                  keys: tuple[int, int, int], resolution: int, train: bool,
                  mean: Sequence[float], std: Sequence[float]
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Any other torch Dataset of (uint8 CHW, label): stacked per batch, same augmentation."""
    g = torch.Generator().manual_seed(_mix(*keys, 0xA06))
    for a, b in slices:
        items = [split[int(i)] for i in idx[a:b]]
        x = torch.stack([_resize_hw(im, resolution, resolution) for im, _ in items])
        y = torch.as_tensor([lbl for _, lbl in items], dtype=torch.int64)
        if train:
            x = _pad_crop_flip(x, g)
        yield _normalise(x, mean, std), y

