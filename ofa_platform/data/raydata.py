"""Training data streamed by Ray Data: Parquet rows read, decoded and cropped in Ray tasks
anywhere in the cluster, so a worker's memory is bounded by the streaming window, not by
the dataset (ImageNet-1k decoded at 224 px is ~190 GB; every in-memory worker holds a copy).

The epoch's order is a pure function of ``(seed, epoch)`` and the dataset's row groups: the
row groups are permuted, the kept training rows of each group are permuted, and rank ``r``
of ``w`` takes the ``r``-th contiguous ``1/w`` of that sequence (truncated to whole batches,
as the in-memory path does). Every rank computes the same plan without talking to the
others, so every image is seen at most once per epoch across workers, the ranks run the
same number of steps, and a resumed run reads what the uninterrupted run would have read.
Each crop is seeded by ``(seed, epoch, global row)``, so it does not matter which task or
node decoded a row. Ray Train's own ``get_dataset_shard`` is not used on purpose: its
dataset is fixed for the whole ``fit`` and its split hands blocks to whichever worker asks
first, so neither the per-epoch augmentation nor the order could be reproduced.

Rows are read one row group at a time (pieces of at most ``max_piece_rows`` rows), decoded
and cropped to the recipe's largest resolution in ``map_batches`` tasks (random crop with
padding for small-input data such as CIFAR, random-resized crop otherwise); the worker
flips, normalises and resizes to the step's resolution (on its GPU when it has one).
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ofa_platform.errors import UserError

__all__ = ["LOADERS", "MEMORY_FRACTION", "EVAL_ROWS", "choose_loader", "decoded_bytes",
           "epoch_sequence", "rank_pieces", "RayDataStream", "load_worker_dataset",
           "decode_piece", "LoaderChoice", "resolve_loader"]

LOADERS = ("auto", "ray-data", "memory")
#: ``auto`` streams when the workers' decoded copies would take more than this fraction of
#: the machine's memory: the rest is the model, optimizer, activations and the object store.
MEMORY_FRACTION = 0.25
#: Validation images a streamed run evaluates when ``val_limit`` is not given: enough for a
#: 0.5%-resolution top-1, small enough to hold decoded (10,000 x 224 px = 1.5 GB).
EVAL_ROWS = 10_000


def decoded_bytes(rows: int, resolution: int) -> int:
    """Bytes of ``rows`` images decoded as uint8 RGB at ``resolution`` (what each in-memory
    worker holds)."""
    return int(rows) * 3 * int(resolution) ** 2


def choose_loader(requested: str, *, sharded: bool, rows: int, resolution: int, workers: int,
                  memory_bytes: int) -> str:
    """``memory`` or ``ray-data`` for a request (``auto``, ``ray-data``, ``memory``).

    ``auto`` streams sharded or remote datasets (the in-memory loader reads one local file)
    and datasets whose decoded copies, one per worker, exceed :data:`MEMORY_FRACTION` of
    ``memory_bytes``."""
    if requested not in LOADERS:
        raise UserError(f"--data-loader {requested!r}: expected one of {', '.join(LOADERS)}")
    if requested != "auto":
        return requested
    if sharded:
        return "ray-data"
    need = decoded_bytes(rows, resolution) * max(1, workers)
    return "ray-data" if need > MEMORY_FRACTION * memory_bytes else "memory"


def _mix(*values: int) -> int:
    from ofa_platform.datasets import _mix as mix

    return mix(*values)


def epoch_sequence(groups: Sequence[tuple[int, int, int, int]], keep: np.ndarray, seed: int,
                   epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """The epoch's global row order: row groups permuted by ``(seed, epoch)``, the kept
    rows of each group permuted by ``(seed, epoch, group)``. Returns ``(rows, group
    position)`` arrays; ``keep`` is a bool mask over the first ``len(keep)`` global rows
    (the training split of the subset)."""
    n = len(keep)
    order = np.random.default_rng(_mix(seed, epoch, 0xDA7A)).permutation(len(groups))
    rows, owner = [], []
    for k in order:
        _, _, first, count = groups[k]
        if first >= n:
            continue
        idx = np.arange(first, min(first + count, n))
        idx = idx[keep[idx]]
        if len(idx) == 0:
            continue
        rows.append(np.random.default_rng(_mix(seed, epoch, int(k), 0x6A0)).permutation(idx))
        owner.append(np.full(len(idx), k))
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rows).astype(np.int64), np.concatenate(owner).astype(np.int64)


def rank_pieces(groups: Sequence[tuple[int, int, int, int]], keep: np.ndarray, *, seed: int,
                epoch: int, rank: int, world: int, batch_size: int,
                max_piece_rows: int = 1024) -> list[dict[str, Any]]:
    """This rank's share of the epoch as read tasks: ``{"shard", "group", "first",
    "offsets"}`` (offsets within the row group, in order), each at most
    ``max_piece_rows`` rows. The ranks get equal, disjoint, contiguous ranges of
    :func:`epoch_sequence`, truncated to whole batches (at least one short batch)."""
    rows, owner = epoch_sequence(groups, keep, seed, epoch)
    per_rank = len(rows) // max(1, world)
    count = (per_rank // batch_size) * batch_size or per_rank
    a = rank * per_rank
    rows, owner = rows[a:a + count], owner[a:a + count]
    pieces: list[dict[str, Any]] = []
    i = 0
    while i < len(rows):
        j = i + 1
        while j < len(rows) and owner[j] == owner[i] and j - i < max_piece_rows:
            j += 1
        shard, group, first, _ = groups[int(owner[i])]
        pieces.append({"shard": int(shard), "group": int(group), "first": int(first),
                       "offsets": (rows[i:j] - first).astype(np.int64).tolist()})
        i = j
    return pieces


def _crop_params(h: int, w: int, rng: np.random.Generator, mode: str) -> tuple[int, int, int,
                                                                               int, bool]:
    """(top, left, height, width, padded) of one training crop. ``pad``: a crop of the
    image's size from a copy padded by size/8 (CIFAR's augmentation); ``rrc``: Inception's
    random-resized crop (area 8-100%, aspect 3/4-4/3), as OFA trains on ImageNet."""
    if mode == "pad":
        pad = max(1, h // 8)
        return int(rng.integers(0, 2 * pad + 1)), int(rng.integers(0, 2 * pad + 1)), h, w, True
    for _ in range(10):
        area = h * w * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw, \
                False
    s = min(h, w)  # fallback: the centre square
    return (h - s) // 2, (w - s) // 2, s, s, False


def decode_piece(batch: dict[str, np.ndarray], *, location: str, paths: Sequence[str],
                 size: int, mode: str, seed: int, epoch: int) -> dict[str, np.ndarray]:
    """Ray Data task body: read one piece's rows from its row group, decode them and crop
    each to ``size x size`` (uint8). An undecodable image fails the task with a message
    naming its shard and row."""
    import pyarrow.parquet as pq
    import torch.nn.functional as F
    from torchvision.io import ImageReadMode, decode_image

    from ofa_platform.data.shards import _filesystem

    fs = _filesystem(location)[0]
    images, labels, index = [], [], []
    for shard, group, first, offsets in zip(batch["shard"], batch["group"], batch["first"],
                                            batch["offsets"]):
        path = paths[int(shard)]
        with fs.open_input_file(path) as f:
            pf = pq.ParquetFile(f)
            table = pf.read_row_group(int(group), columns=["image", "label"])
            group_start = sum(pf.metadata.row_group(g).num_rows for g in range(int(group)))
        img_col, lab_col = table.column("image"), table.column("label")
        for off in np.asarray(offsets, dtype=np.int64):
            g_row = int(first) + int(off)
            blob = img_col[int(off)].as_py()
            try:
                img = decode_image(torch.frombuffer(bytearray(blob), dtype=torch.uint8),
                                   mode=ImageReadMode.RGB)
            except (RuntimeError, ValueError):
                raise UserError(f"shard {path} row {group_start + int(off)}: cannot decode the "
                                "image") from None
            rng = np.random.default_rng(_mix(seed, epoch, g_row, 0xC40))
            h, w = img.shape[-2:]
            top, left, ch, cw, padded = _crop_params(h, w, rng, mode)
            if padded:
                pad = max(1, h // 8)
                img = F.pad(img, (pad, pad, pad, pad))
            crop = img[:, top:top + ch, left:left + cw]
            if crop.shape[-2:] != (size, size):
                crop = F.interpolate(crop[None].float(), size=(size, size), mode="bilinear",
                                     align_corners=False, antialias=True)[0]
                crop = crop.round().clamp(0, 255).to(torch.uint8)
            images.append(crop.numpy())
            labels.append(int(lab_col[int(off)].as_py()))
            index.append(g_row)
    return {"image": np.stack(images), "label": np.asarray(labels, np.int64),
            "index": np.asarray(index, np.int64)}


@dataclass(frozen=True)
class _StreamSpec:
    location: str
    paths: tuple[str, ...]
    groups: tuple[tuple[int, int, int, int], ...]
    n_rows: int


class RayDataStream:
    """One worker's training batches through Ray Data (see the module docstring).

    ``batches(epoch)`` yields ``(float images normalised at size, int64 labels)``; the
    worker resizes to each step's resolution as the in-memory path does."""

    def __init__(self, spec: Any, *, subset: int | None, seed: int, size: int, rank: int,
                 world: int, batch_size: int, val_fraction: float = 0.1,
                 task_cpus: float = 0.5, max_piece_rows: int = 1024) -> None:
        from ofa_platform.data.shards import describe
        from ofa_platform.datasets import _split

        layout = describe(spec.uri or str(spec.path))
        n = layout.n_train_rows if subset is None else min(subset, layout.n_train_rows)
        tr, _ = _split(n, val_fraction, seed)
        self.keep = np.zeros(n, dtype=bool)
        self.keep[tr.numpy()] = True
        self.n_train = int(self.keep.sum())
        self.plan = _StreamSpec(location=layout.location,
                                paths=tuple(s.path for s in layout.train),
                                groups=tuple(layout.row_groups("train")), n_rows=n)
        self.seed, self.size, self.rank, self.world = seed, size, rank, world
        self.batch_size, self.task_cpus, self.max_piece_rows = batch_size, task_cpus, \
            max_piece_rows
        self.mode = "pad" if spec.small_input else "rrc"
        self.mean, self.std = spec.mean, spec.std
        self._ahead: _Ahead | None = None  # an epoch started before it is read

    def pieces(self, epoch: int) -> list[dict[str, Any]]:
        return rank_pieces(self.plan.groups, self.keep, seed=self.seed, epoch=epoch,
                           rank=self.rank, world=self.world, batch_size=self.batch_size,
                           max_piece_rows=self.max_piece_rows)

    def dataset(self, epoch: int) -> Any:
        """The epoch's Ray Dataset for this rank (lazy; nothing runs until iterated)."""
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # the plan's order, not completion order
        ctx.enable_progress_bars = False
        items = self.pieces(epoch)
        ds = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
        return ds.map_batches(
            decode_piece, batch_size=1, batch_format="numpy", num_cpus=self.task_cpus,
            fn_kwargs={"location": self.plan.location, "paths": self.plan.paths,
                       "size": self.size, "mode": self.mode, "seed": self.seed, "epoch": epoch})

    def start(self, epoch: int) -> None:
        """Begin streaming ``epoch`` now, in the background. The engine calls it as soon as
        the previous epoch's steps are done, so Ray Data's start-up (planning, launching the
        read tasks, the first decoded blocks: a second or two, all inside the next epoch's
        first step otherwise) overlaps that epoch's validation and checkpoint. The batches
        are the same either way: they are a function of ``(seed, epoch)``."""
        if self._ahead is not None and self._ahead.epoch == epoch:
            return
        self.close()
        self._ahead = _Ahead(epoch, self.dataset(epoch), self.batch_size)

    def close(self) -> None:
        """Stop a stream started ahead that will not be read."""
        if self._ahead is not None:
            self._ahead.close()
            self._ahead = None

    def batches(self, epoch: int, device: torch.device | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Normalised float batches (flipped per image, seeded by seed, epoch, rank, batch)
        and labels, ``batch_size`` each (one short batch only when a rank has fewer rows)."""
        from ofa_platform.datasets import _normalise

        self.start(epoch)
        ahead, self._ahead = self._ahead, None
        assert ahead is not None
        try:
            for k, b in enumerate(ahead):
                x, y = b["image"], b["label"]
                if device is not None:
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                g = torch.Generator().manual_seed(_mix(self.seed, epoch, self.rank, k, 0xF11))
                flip = (torch.rand(len(x), generator=g) < 0.5).to(x.device)
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                yield _normalise(x, self.mean, self.std), y
        finally:
            ahead.close()


class _Ahead:
    """One epoch's Ray Data batches, iterated by a daemon thread into a small queue from the
    moment it is made; iterating this object reads them in order (a task's error is raised
    here). ``close`` stops the thread (the reader stopped early, or never started)."""

    _END = object()

    def __init__(self, epoch: int, dataset: Any, batch_size: int, depth: int = 4) -> None:
        self.epoch = epoch
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(dataset, batch_size),
                                        name=f"raydata-epoch-{epoch}", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, dataset: Any, batch_size: int) -> None:
        batches = iter(dataset.iter_torch_batches(batch_size=batch_size, prefetch_batches=2,
                                                  drop_last=False))
        try:
            for b in batches:
                if not self._put(b):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, raised there
            self._put(exc)
            return
        finally:  # a stopped stream shuts Ray Data's executor down here, not when collected
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        self._put(self._END)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break


def load_worker_dataset(spec: Any, *, loader: str, subset: int | None, seed: int,
                        recal_images: int, val_limit: int | None) -> Any:
    """What a training worker holds in memory: everything (``memory``), or for ``ray-data``
    only the calibration and validation rows evaluation uses (``meta["train_rows"]`` then
    says how many training rows the stream has)."""
    from ofa_platform.datasets import load_dataset, train_size

    if loader != "ray-data":
        return load_dataset(spec, subset=subset, seed=seed)
    heads = (max(1, recal_images), max(1, val_limit or EVAL_ROWS))
    splits = load_dataset(spec, subset=subset, seed=seed, heads=heads)
    rows = train_size(spec, seed=seed) if subset is None else None
    if rows is None:
        from ofa_platform.datasets import _split

        rows = len(_split(min(subset, _rows(spec)), 0.1, seed)[0])
    splits.meta["train_rows"] = rows
    return splits


def _rows(spec: Any) -> int:
    from ofa_platform.data.shards import describe

    return describe(spec.uri or str(spec.path)).n_train_rows


@dataclass(frozen=True)
class LoaderChoice:
    """The driver's decision for one training request, made before Ray starts: the loader,
    what the workers will hold in memory, and the training rows (this run's and the whole
    dataset's, for the full-recipe projection)."""

    loader: str
    dataset: Any  # DatasetSplits (all rows for ``memory``, evaluation rows for ``ray-data``)
    n_train: int
    n_train_full: int


def resolve_loader(requested: str, spec: Any, *, workers: int, subset: int | None, seed: int,
                   recal_images: int, val_limit: int | None,
                   memory_bytes: int | None = None) -> LoaderChoice | None:
    """Validate and resolve ``--data-loader`` for a request. ``None`` means the in-memory
    path as before (the caller loads the dataset); a streamed Parquet dataset is validated
    here: footers and schemas of every shard, every label in range (labels column only),
    and the evaluation rows decoded; each problem is a ``UserError`` naming the shard."""
    from ofa_platform.data.shards import describe, validate_labels
    from ofa_platform.datasets import _sharded, train_size

    if requested not in LOADERS:
        raise UserError(f"--data-loader {requested!r}: expected one of {', '.join(LOADERS)}")
    if spec.kind != "parquet":
        if requested == "ray-data":
            raise UserError(f"--data-loader ray-data streams Parquet datasets, not {spec.kind}; "
                            "convert it first: ofa-platform data convert imagefolder:DIR "
                            "parquet:OUT")
        return None
    sharded = _sharded(spec)
    if requested == "memory" and sharded:
        raise UserError(f"--data-loader memory reads DIR/train.parquet; {spec.uri or spec.path} "
                        "is sharded or remote: use --data-loader ray-data (or auto)")
    if requested == "memory":
        return None
    if memory_bytes is None:
        import psutil

        memory_bytes = psutil.virtual_memory().total
    resolution = max(spec.resolutions) if spec.resolutions else 224
    if not sharded and requested == "auto":
        try:  # one local file: its footer's row count decides; the memory path reports errors
            rows = train_size(spec, seed=seed)
        except Exception:  # noqa: BLE001 - load_dataset names the problem as before
            return None
        rows = rows if subset is None else min(subset, rows)
        if choose_loader("auto", sharded=False, rows=rows, resolution=resolution,
                         workers=workers, memory_bytes=memory_bytes) == "memory":
            return None
    layout = describe(spec.uri or str(spec.path))
    n_classes = spec.n_classes or len(layout.classes)
    if not n_classes:
        raise UserError(f"parquet {layout.location}: no class names in the schema metadata "
                        "and no n_classes in the recipe")
    validate_labels(layout, n_classes)
    dataset = load_worker_dataset(spec, loader="ray-data", subset=subset, seed=seed,
                                  recal_images=recal_images, val_limit=val_limit)
    return LoaderChoice(loader="ray-data", dataset=dataset,
                        n_train=int(dataset.meta["train_rows"]),
                        n_train_full=train_size(spec, seed=seed))
