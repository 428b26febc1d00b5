"""Parquet image datasets in shards: layout, validation, row access, conversion, checking.

A Parquet dataset is a directory (local or ``s3://...``) in one of two layouts:

- ``DIR/train.parquet`` (optional ``DIR/test.parquet``): one file per split, the CIFAR-10
  reference layout;
- ``DIR/train/*.parquet`` (optional ``DIR/val/*.parquet``): shards, the layout
  ``ofa-platform data convert`` writes for ImageNet-size data, read in file-name order.

Every file has the columns ``image`` (encoded bytes) and ``label`` (integer); the schema
metadata key ``classes`` holds the comma-separated class names in label order. Only footers
are read to describe a dataset (:func:`describe`), so a 1.28 M-image dataset is described in
milliseconds; rows are read per row group (:func:`read_rows`), so evaluation actors and the
Ray Data stream touch only what they use. Every problem is a ``UserError`` naming the shard
(and the row), so a bad shard costs one line and exit status 2, not a failed job later.
"""

from __future__ import annotations

import io
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ofa_platform.errors import UserError

__all__ = ["ShardInfo", "ParquetLayout", "is_uri", "describe", "is_sharded", "read_rows",
           "decode_fixed", "validate_labels", "CheckReport", "check", "convert_imagefolder",
           "shard_name", "load_sharded", "centre_crop", "stderr_progress", "ROW_GROUP_ROWS"]

#: Rows per row group written by ``data convert``: the unit the stream reads. 256 ImageNet
#: JPEGs (~110 kB each at a 256-px short side) are ~28 MB: small enough that a read task's
#: window stays bounded, large enough that Parquet's per-group overhead is negligible.
ROW_GROUP_ROWS = 256
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def is_uri(location: str | Path) -> bool:
    """``s3://bucket/key`` and other URIs pyarrow reads; plain paths are local."""
    return "://" in str(location)


def _filesystem(location: str) -> tuple[Any, str]:
    """pyarrow filesystem and path for a local path or a URI (``s3://``, ``gs://``,
    ``file://``). An unreachable URI is a ``UserError`` naming it (pyarrow resolves an S3
    bucket's region over the network here, so an unknown bucket or no network fails now)."""
    import pyarrow.fs as pafs

    if not is_uri(location):
        local = Path(location).expanduser().resolve()
        if not local.exists():
            raise UserError(f"parquet {location}: no such file or directory")
        return pafs.LocalFileSystem(), str(local)
    try:
        if location.startswith("s3://"):
            fs, path = _s3(location)
        else:
            fs, path = pafs.FileSystem.from_uri(location)
        info = fs.get_file_info(path)
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is the user's to fix
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"parquet {location}: unreachable ({msg[:160]})") from None
    if info.type.name == "NotFound":
        raise UserError(f"parquet {location}: no such file or directory")
    return fs, path


def _s3(location: str) -> tuple[Any, str]:
    """An S3 filesystem with short timeouts and few retries, so an unreachable bucket is
    reported in seconds (pyarrow's defaults retry for about 40 s). The region comes from
    ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` when set, else is resolved from the bucket."""
    import os

    import pyarrow.fs as pafs

    path = location[len("s3://"):].rstrip("/")
    bucket = path.split("/", 1)[0]
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        region = pafs.resolve_s3_region(bucket)
    fs = pafs.S3FileSystem(region=region, connect_timeout=5, request_timeout=20,
                           retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=2))
    return fs, path


@dataclass(frozen=True)
class ShardInfo:
    """One Parquet file of a split: where it is and its row groups' sizes (footer only)."""

    path: str
    rows: int
    row_groups: tuple[int, ...]


@dataclass(frozen=True)
class ParquetLayout:
    """A described Parquet dataset: its files per split, classes and where it lives.
    ``location`` is what the user gave (path or URI); ``paths`` inside shards are in the
    filesystem's own form (what :func:`_filesystem` returns for ``location``)."""

    location: str
    train: tuple[ShardInfo, ...]
    test: tuple[ShardInfo, ...]
    classes: tuple[str, ...]
    sharded: bool

    @property
    def n_train_rows(self) -> int:
        return sum(s.rows for s in self.train)

    def filesystem(self) -> Any:
        return _filesystem(self.location)[0]

    def row_groups(self, split: str = "train") -> list[tuple[int, int, int, int]]:
        """``(shard index, row group, first global row, rows)`` of every row group, in order."""
        out, base = [], 0
        for i, s in enumerate(self.train if split == "train" else self.test):
            for g, n in enumerate(s.row_groups):
                out.append((i, g, base, n))
                base += n
        return out


def _shard_files(fs: Any, directory: str) -> list[str]:
    import pyarrow.fs as pafs

    infos = fs.get_file_info(pafs.FileSelector(directory, recursive=False))
    return sorted(i.path for i in infos
                  if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                  and not Path(i.path).name.startswith((".", "_")))


def _shard_info(fs: Any, path: str, where: str) -> tuple[ShardInfo, tuple[str, ...]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            schema, md = pf.schema_arrow, pf.metadata
    except Exception as exc:  # noqa: BLE001 - a corrupt footer is bad input
        raise UserError(f"{where}: not a readable Parquet file ({type(exc).__name__})") from None
    fields = {f.name: f.type for f in schema}
    img, lbl = fields.get("image"), fields.get("label")
    if img is None or lbl is None or not (pa.types.is_binary(img) or pa.types.is_large_binary(
            img)) or not pa.types.is_integer(lbl):
        have = ", ".join(f"{k}: {v}" for k, v in fields.items())
        raise UserError(f"{where}: wrong schema: needs image: binary and label: integer, "
                        f"has {have}")
    meta = schema.metadata or {}
    classes = tuple(meta[b"classes"].decode().split(",")) if b"classes" in meta else ()
    groups = tuple(md.row_group(g).num_rows for g in range(md.num_row_groups))
    return ShardInfo(path=path, rows=md.num_rows, row_groups=groups), classes


def describe(location: str | Path) -> ParquetLayout:
    """Read the footers of a Parquet dataset (either layout) and validate their schemas and
    class lists; nothing is decoded. Bad input is a ``UserError`` naming the shard."""
    location = str(location)
    fs, root = _filesystem(location)
    import pyarrow.fs as pafs

    kind = fs.get_file_info(root).type
    if kind == pafs.FileType.File:
        train_files, test_files, sharded = [root], [], False
    elif fs.get_file_info(f"{root}/train.parquet").type == pafs.FileType.File:
        train_files, sharded = [f"{root}/train.parquet"], False
        t = f"{root}/test.parquet"
        test_files = [t] if fs.get_file_info(t).type == pafs.FileType.File else []
    elif fs.get_file_info(f"{root}/train").type == pafs.FileType.Directory:
        train_files, sharded = _shard_files(fs, f"{root}/train"), True
        v = f"{root}/val"
        test_files = (_shard_files(fs, v)
                      if fs.get_file_info(v).type == pafs.FileType.Directory else [])
    else:
        raise UserError(f"parquet {location}: no train.parquet and no train/ shards in it")
    if not train_files:
        raise UserError(f"parquet {location}: train/ holds no .parquet shards")
    infos: dict[str, list[ShardInfo]] = {"train": [], "test": []}
    classes: tuple[str, ...] | None = None
    for split, files in (("train", train_files), ("test", test_files)):
        for path in files:
            info, cls = _shard_info(fs, path, f"shard {_display(location, root, path)}")
            if classes is None:
                classes = cls
            elif cls and cls != classes:
                raise UserError(f"shard {_display(location, root, path)}: its classes differ "
                                "from the first shard's")
            infos[split].append(info)
    if sum(s.rows for s in infos["train"]) == 0:
        raise UserError(f"parquet {location}: no training rows")
    return ParquetLayout(location=location, train=tuple(infos["train"]),
                         test=tuple(infos["test"]), classes=classes or (), sharded=sharded)


def _display(location: str, root: str, path: str) -> str:
    """A shard as the user named its dataset: ``LOCATION/train/part-00003.parquet``."""
    rel = path[len(root):].lstrip("/") if path.startswith(root) else path
    return f"{location.rstrip('/')}/{rel}" if rel else location


def shard_name(layout: ParquetLayout, shard: ShardInfo) -> str:
    return _display(layout.location, _filesystem(layout.location)[1], shard.path)


def is_sharded(location: str | Path) -> bool:
    """True for the ``train/*.parquet`` layout or a URI (both need :func:`load_sharded`)."""
    if is_uri(location):
        return True
    p = Path(location)
    return p.is_dir() and not (p / "train.parquet").is_file() and (p / "train").is_dir()


def validate_labels(layout: ParquetLayout, n_classes: int, split: str = "train") -> None:
    """Every label in ``[0, n_classes)``: reads the label columns only (a few MB for
    ImageNet). The first bad one is a ``UserError`` naming its shard and row."""
    import pyarrow.parquet as pq

    fs = layout.filesystem()
    for shard in layout.train if split == "train" else layout.test:
        with fs.open_input_file(shard.path) as f:
            labels = pq.ParquetFile(f).read(columns=["label"]).column("label").to_numpy(
                zero_copy_only=False)
        bad = ((labels < 0) | (labels >= n_classes)).nonzero()[0]
        if len(bad):
            r = int(bad[0])
            raise UserError(f"shard {shard_name(layout, shard)} row {r}: label {int(labels[r])} "
                            f"outside 0..{n_classes - 1}")


def read_rows(layout: ParquetLayout, indices: Sequence[int], split: str = "train"
              ) -> tuple[list[bytes], list[int], list[str]]:
    """Encoded images, labels and ``shard row N`` names of the given global rows (in the
    given order), reading only the row groups that hold them."""
    import bisect

    import pyarrow.parquet as pq

    groups = layout.row_groups(split)
    starts = [g[2] for g in groups]
    shards = layout.train if split == "train" else layout.test
    wanted: dict[int, list[tuple[int, int]]] = {}
    for pos, idx in enumerate(indices):
        k = bisect.bisect_right(starts, int(idx)) - 1
        wanted.setdefault(k, []).append((pos, int(idx) - starts[k]))
    blobs: list[bytes] = [b""] * len(indices)
    labels: list[int] = [0] * len(indices)
    names: list[str] = [""] * len(indices)
    fs = layout.filesystem()
    by_shard: dict[int, list[int]] = {}
    for k in wanted:
        by_shard.setdefault(groups[k][0], []).append(k)
    for si, ks in sorted(by_shard.items()):
        shard = shards[si]
        shard_first = groups[ks[0]][2] - sum(shard.row_groups[:groups[ks[0]][1]])
        with fs.open_input_file(shard.path) as f:
            pf = pq.ParquetFile(f)
            for k in sorted(ks):
                t = pf.read_row_group(groups[k][1], columns=["image", "label"])
                img, lab = t.column("image"), t.column("label")
                for pos, off in wanted[k]:
                    blobs[pos] = img[off].as_py()
                    labels[pos] = int(lab[off].as_py())
                    names[pos] = (f"shard {shard_name(layout, shard)} row "
                                  f"{groups[k][2] + off - shard_first}")
    return blobs, labels, names


def decode_fixed(blobs: Sequence[bytes], names: Sequence[str], size: int | None) -> Any:
    """Decode to one uint8 ``N x 3 x S x S`` tensor: images of one size as they are (``size``
    None), else each resized (shorter side to ``size / 0.875``) and centre-cropped to
    ``size``, ImageNet's evaluation transform, so mixed-size shards stack. An undecodable
    image is a ``UserError`` naming its shard and row."""
    import torch
    from torchvision.io import ImageReadMode, decode_image

    out = []
    for blob, name in zip(blobs, names):
        try:
            img = decode_image(torch.frombuffer(bytearray(blob), dtype=torch.uint8),
                               mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError) as exc:
            raise UserError(f"{name}: cannot decode the image "
                            f"({str(exc).splitlines()[0][:80]})") from None
        if size is not None:
            img = centre_crop(img, size)
        out.append(img)
    shapes = {tuple(i.shape) for i in out}
    if len(shapes) > 1:
        raise UserError(f"{names[0]}: images of different sizes {sorted(shapes)[:3]}")
    return torch.stack(out) if out else torch.zeros(0, 3, size or 1, size or 1,
                                                    dtype=torch.uint8)


def centre_crop(img: Any, size: int) -> Any:
    """Shorter side to ``round(size / 0.875)``, then the centre ``size x size`` (uint8 CHW)."""
    import torch
    import torch.nn.functional as F

    h, w = img.shape[-2:]
    s = round(size / 0.875) / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    if (nh, nw) != (h, w):
        img = F.interpolate(img[None].float(), size=(nh, nw), mode="bilinear",
                            align_corners=False, antialias=True)[0].round().clamp(0, 255)
        img = img.to(torch.uint8)
    y0, x0 = (nh - size) // 2, (nw - size) // 2
    return img[:, y0:y0 + size, x0:x0 + size].contiguous()


def load_sharded(spec: Any, subset: int | None, val_fraction: float, seed: int,
                 heads: tuple[int | None, int | None] | None) -> Any:
    """:func:`ofa_platform.datasets.load_dataset` for sharded or remote Parquet: the same
    seeded split over the global row order, decoding only the kept rows (``heads``), to
    the recipe's largest resolution when the images differ in size."""
    import torch

    from ofa_platform.datasets import DatasetSplits, TensorImageDataset, _split

    location = spec.uri or str(spec.path)
    layout = describe(location)
    n = layout.n_train_rows if subset is None else min(subset, layout.n_train_rows)
    tr, va = _split(n, val_fraction, seed, heads)
    size = max(spec.resolutions) if spec.resolutions else None
    n_classes = spec.n_classes or len(layout.classes)

    def load(idx: list[int], split: str = "train") -> Any:
        blobs, labels, names = read_rows(layout, idx, split)
        for lab, name in zip(labels, names):
            if n_classes and not 0 <= lab < n_classes:
                raise UserError(f"{name}: label {lab} outside 0..{n_classes - 1}")
        return TensorImageDataset(decode_fixed(blobs, names, size),
                                  torch.as_tensor(labels, dtype=torch.int64))

    try:
        train, val = load(tr.tolist()), load(va.tolist())
    except UserError as exc:
        if size is not None or "different sizes" not in str(exc):
            raise
        # no recipe resolution and mixed sizes (an ImageNet-style tree): ImageFolder's
        # defaults, OFA's 128..224 px, evaluated on 224-px centre crops
        spec = replace(spec, resolutions=tuple(range(128, 225, 4)))
        size = 224
        train, val = load(tr.tolist()), load(va.tolist())
    test = None
    if heads is None and layout.test:
        n_test = sum(s.rows for s in layout.test)
        test = load(list(range(n_test if subset is None else min(n_test, subset))), "test")
    classes = layout.classes if len(layout.classes) == n_classes else tuple(
        str(i) for i in range(n_classes or 1))
    return DatasetSplits(
        name=spec.name or Path(location.rstrip("/")).name, train=train, val=val,
        classes=tuple(classes),
        resolutions=spec.resolutions or (int(train.images.shape[-1]),), mean=spec.mean,
        std=spec.std, small_input=spec.small_input, test=test, meta={"source": location})


# --------------------------------------------------------------------------- check
@dataclass(frozen=True)
class CheckReport:
    """What ``data check`` found: per shard (split, name, rows, label min/max, undecodable
    rows) and the problems, each naming its shard and row."""

    location: str
    classes: tuple[str, ...]
    shards: tuple[dict[str, Any], ...]
    problems: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"location": self.location, "classes": list(self.classes),
                "shards": [dict(s) for s in self.shards], "problems": list(self.problems),
                "rows": sum(s["rows"] for s in self.shards)}


def check(location: str | Path, *, decode: bool = True,
          progress: Callable[[str], None] | None = None) -> CheckReport:
    """Validate every shard: schema and classes (footers), row counts, labels in range and,
    with ``decode``, that every image decodes. Problems are collected (at most 20 listed),
    not raised, so one run names all of them."""
    layout = describe(location)
    n_classes = len(layout.classes)
    fs = layout.filesystem()
    shards, problems = [], []
    total = len(layout.train) + len(layout.test)
    for k, (split, shard) in enumerate([("train", s) for s in layout.train]
                                       + [("val", s) for s in layout.test]):
        name = shard_name(layout, shard)
        with fs.open_input_file(shard.path) as f:
            labels, bad_rows, found = _check_shard_file(f, name, n_classes, decode)
        problems += found
        shards.append({"split": split, "shard": name, "rows": shard.rows,
                       "row_groups": len(shard.row_groups),
                       "label_min": min(labels, default=None),
                       "label_max": max(labels, default=None),
                       "undecodable": bad_rows[:20]})
        if progress is not None:
            progress(f"[data check] {k + 1}/{total} shards  {name}: {shard.rows} rows"
                     + (f", {len(bad_rows)} undecodable" if bad_rows else ""))
    return CheckReport(location=str(location), classes=layout.classes, shards=tuple(shards),
                       problems=tuple(problems))


def _check_shard_file(f: Any, name: str, n_classes: int,
                      decode: bool) -> tuple[list[int], list[int], list[str]]:
    """One shard, a row group at a time: its non-null labels, the rows whose image does not
    decode (``decode``), and a line per problem naming the shard and row."""
    import pyarrow.parquet as pq
    import torch
    from torchvision.io import ImageReadMode, decode_image

    pf = pq.ParquetFile(f)
    labels: list[int] = []
    bad_rows: list[int] = []
    problems: list[str] = []
    base = 0
    for g in range(pf.metadata.num_row_groups):
        t = pf.read_row_group(g, columns=["image", "label"] if decode else ["label"])
        group = t.column("label").to_pylist()
        for r, lab in enumerate(group):
            if lab is None or (n_classes and not 0 <= lab < n_classes) or lab < 0:
                problems.append(f"shard {name} row {base + r}: label {lab} outside "
                                f"0..{max(n_classes - 1, 0)}")
        labels += [x for x in group if x is not None]
        if decode:
            for r, blob in enumerate(t.column("image").to_pylist()):
                try:
                    decode_image(torch.frombuffer(bytearray(blob or b"\0"), dtype=torch.uint8),
                                 mode=ImageReadMode.RGB)
                except (RuntimeError, ValueError):
                    bad_rows.append(base + r)
                    problems.append(f"shard {name} row {base + r}: cannot decode the image")
        base += len(group)
    return labels, bad_rows, problems


# --------------------------------------------------------------------------- convert
def _folder_items(root: Path) -> tuple[list[tuple[str, int]], list[str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    items = []
    for i, c in enumerate(classes):
        items.extend((str(p), i) for p in sorted((root / c).rglob("*"))
                     if p.suffix.lower() in _IMAGE_SUFFIXES)
    return items, classes


def _encode(path: str, resize: int | None) -> bytes:
    """The file's bytes as they are, or decoded, shorter side resized to ``resize`` and
    re-encoded as JPEG (quality 90), which shrinks ImageNet ~3x for 224-px training."""
    data = Path(path).read_bytes()
    if resize is None:
        return data
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            w, h = im.size
            s = resize / min(w, h)
            if s < 1:  # never upscale: it adds bytes, not information
                im = im.resize((max(1, round(w * s)), max(1, round(h * s))),
                               Image.Resampling.BILINEAR)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=90)
            return buf.getvalue()
    except Exception as exc:  # noqa: BLE001 - an unreadable source image is bad input
        raise UserError(f"image {path}: cannot decode ({type(exc).__name__})") from None


def _shard_meta(classes: Sequence[str], index: int, count: int, rows: int,
                resize: int | None, source: str) -> dict[bytes, bytes]:
    return {b"classes": ",".join(classes).encode(), b"ofa.shard": f"{index}/{count}".encode(),
            b"ofa.rows": str(rows).encode(), b"ofa.resize": str(resize).encode(),
            b"source": source.encode()}


def _shard_done(path: Path, meta: dict[bytes, bytes]) -> bool:
    """A shard from an earlier run is kept when it is complete and written with the same
    settings (shard count, rows, resize, classes): resuming never mixes two conversions."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return False
    try:
        pf = pq.ParquetFile(path)
    except Exception:  # noqa: BLE001 - a damaged leftover is rewritten
        return False
    have = pf.schema_arrow.metadata or {}
    return pf.metadata.num_rows == int(meta[b"ofa.rows"]) and all(
        have.get(k) == v for k, v in meta.items() if k != b"source")


def convert_imagefolder(src: str | Path, out: str | Path, *, shards: int = 16,
                        resize: int | None = None, seed: int = 0,
                        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write an ImageFolder tree (``SRC/train/<class>/*``, optional ``SRC/val/<class>/*``,
    or ``SRC/<class>/*``) as Parquet shards ``OUT/train/part-IIIII-of-NNNNN.parquet``
    (and ``OUT/val/...``). Files are shuffled once (seeded) before they are cut into shards,
    so every shard and every row group mixes the classes: the stream reads row groups, and
    a class-sorted group would feed one class per step. Each shard is written to a temporary
    name and renamed when complete; a rerun keeps the complete shards written with the same
    settings and writes only the others. Returns a summary (rows and shards per split)."""
    src, out = Path(src).expanduser().resolve(), Path(out).expanduser().resolve()
    if shards < 1:
        raise UserError(f"--shards {shards}: expected a positive integer")
    if resize is not None and resize < 8:
        raise UserError(f"--resize {resize}: expected a short side of at least 8 pixels")
    splits, classes = _folder_splits(src)
    summary: dict[str, Any] = {"classes": len(classes), "splits": {}}
    say = progress or (lambda s: None)
    t0 = time.perf_counter()
    done_images = 0
    total_images = sum(len(v) for v in splits.values())
    for split, rows in splits.items():
        rows = list(rows)
        random.Random(seed).shuffle(rows)
        n_shards = shards if split == "train" else max(1, math.ceil(
            shards * len(rows) / len(splits["train"])))
        n_shards = min(n_shards, len(rows))
        kept = written = 0
        for i in range(n_shards):
            a, b = i * len(rows) // n_shards, (i + 1) * len(rows) // n_shards
            path = out / split / f"part-{i:05d}-of-{n_shards:05d}.parquet"
            meta = _shard_meta(classes, i, n_shards, b - a, resize, str(src))
            if _shard_done(path, meta):
                kept, status = kept + 1, "kept"
            else:
                _write_shard(path, rows[a:b], meta, resize)
                written, status = written + 1, "written"
            done_images += b - a
            rate = done_images / max(time.perf_counter() - t0, 1e-9)
            say(f"[data convert] {split} {_bar(done_images, total_images)} shard "
                f"{i + 1}/{n_shards} ({status}) "
                f"{done_images}/{total_images} images {rate:.0f} img/s")
        summary["splits"][split] = {"rows": len(rows), "shards": n_shards, "kept": kept,
                                    "written": written}
    return summary


def _folder_splits(src: Path) -> tuple[dict[str, list[tuple[str, int]]], list[str]]:
    """The tree's image files per split (``train``, and ``val`` when it has the same
    classes) and its class names; a tree with no images or a comma in a class name (the
    classes metadata is comma-separated) is refused."""
    if not src.is_dir():
        raise UserError(f"imagefolder {src}: no such directory")
    train_root = src / "train" if (src / "train").is_dir() else src
    items, classes = _folder_items(train_root)
    if not items:
        raise UserError(f"imagefolder {train_root}: no images in class subdirectories")
    bad = [c for c in classes if "," in c]
    if bad:
        raise UserError(f"imagefolder {train_root}: class name {bad[0]!r} contains a comma")
    splits = {"train": items}
    if train_root != src and (src / "val").is_dir():
        v_items, v_classes = _folder_items(src / "val")
        if v_items:
            if v_classes != classes:
                raise UserError(f"imagefolder {src / 'val'}: its classes differ from train/'s")
            splits["val"] = v_items
    return splits, classes


def _write_shard(path: Path, chunk: list[tuple[str, int]], meta: dict[bytes, bytes],
                 resize: int | None) -> None:
    """One shard, written under a temporary name and renamed when complete."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ofa_platform.files import atomic_path

    table = pa.table({"image": pa.array([_encode(p, resize) for p, _ in chunk],
                                        type=pa.binary()),
                      "label": pa.array([lab for _, lab in chunk], type=pa.int32())})
    table = table.replace_schema_metadata(meta)
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS)


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = int(width * done / max(total, 1))
    return "[" + "#" * filled + "." * (width - filled) + f"] {100 * done / max(total, 1):3.0f}%"


def stderr_progress(line: str) -> None:
    """Progress lines on stderr (stdout stays the command's result, e.g. ``--json``)."""
    print(line, file=sys.stderr, flush=True)
