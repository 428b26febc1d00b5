"""Parquet shards and the Ray Data stream: conversion, checking, bad input named by shard
and row, the per-epoch plan (disjoint, equal, deterministic), and a streamed training job."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from ofa_platform.cli import main
from ofa_platform.errors import UserError


def _tree(root: Path, n: int = 6, classes: tuple[str, ...] = ("cat", "dog", "eel")) -> Path:
    from PIL import Image

    for split, count in (("train", n), ("val", 2)):
        for k, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (20 + 3 * i, 16), (40 * k, 10 * i, 90)).save(d / f"{i}.png")
    return root


def _convert(tmp_path: Path, shards: int = 3, resize: int | None = 24) -> Path:
    out = tmp_path / "pq"
    args = ["data", "convert", f"imagefolder:{_tree(tmp_path / 'img')}", f"parquet:{out}",
            "--shards", str(shards)]
    assert main(args + (["--resize", str(resize)] if resize else [])) == 0
    return out


def test_convert_writes_shuffled_shards_and_resumes(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    import pyarrow.parquet as pq

    from ofa_platform.data.shards import describe

    out = _convert(tmp_path)
    err = capsys.readouterr().err
    assert "[data convert] train" in err and "100%" in err  # progress on stderr
    layout = describe(out)
    assert layout.sharded and layout.classes == ("cat", "dog", "eel")
    assert [s.rows for s in layout.train] == [6, 6, 6] and sum(s.rows for s in layout.test) == 6
    first = pq.read_table(layout.train[0].path)
    assert len(set(first.column("label").to_pylist())) > 1  # shards mix the classes
    # a rerun keeps every finished shard; a lost shard is written again
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet")}
    Path(layout.train[1].path).unlink()
    assert main(["data", "convert", f"imagefolder:{tmp_path / 'img'}", f"parquet:{out}",
                 "--shards", "3", "--resize", "24", "--json"]) == 0
    import json

    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"] == {"rows": 18, "shards": 3, "kept": 2, "written": 1}
    kept = [p for p in stamp if p.exists() and p.stat().st_mtime_ns == stamp[p]]
    assert len(kept) == 3  # two train shards and the val shard untouched
    # different settings are not mixed with the old shards: they are all rewritten
    assert main(["data", "convert", f"imagefolder:{tmp_path / 'img'}", f"parquet:{out}",
                 "--shards", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["splits"]["train"]["written"] == 3


def test_check_reports_rows_and_names_bad_rows(tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    out = _convert(tmp_path)
    capsys.readouterr()
    assert main(["data", "check", f"parquet:{out}", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 24 and report["problems"] == []
    assert {(s["label_min"], s["label_max"]) for s in report["shards"]} <= {(0, 2), (0, 1),
                                                                             (1, 2)}
    # an undecodable image and an out-of-range label, in shard 2
    shard = sorted((out / "train").glob("*.parquet"))[1]
    t = pq.read_table(shard)
    images = t.column("image").to_pylist()
    labels = t.column("label").to_pylist()
    images[4], labels[2] = b"not an image", 7
    bad = pa.table({"image": pa.array(images, pa.binary()), "label": pa.array(labels, pa.int32())}
                   ).replace_schema_metadata(t.schema.metadata)
    pq.write_table(bad, shard)
    assert main(["data", "check", f"parquet:{out}"]) == 2
    cap = capsys.readouterr()
    line = cap.err.strip().splitlines()
    assert len(line) == 1 and f"{shard.name} row 2: label 7 outside 0..2" in line[0]
    assert "(and 1 more problems)" in line[0]
    assert f"{shard.name} row 4: cannot decode the image" in cap.out


def test_bad_shards_are_one_line_naming_the_shard(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ofa_platform.data.shards import describe

    out = _convert(tmp_path)
    capsys.readouterr()
    wrong = out / "train" / "part-00001-of-00003.parquet"
    pq.write_table(pa.table({"img": [b"x"], "label": [1]}), wrong)
    with pytest.raises(UserError, match="part-00001-of-00003.parquet: wrong schema"):
        describe(out)
    assert main(["data", "check", f"parquet:{out}"]) == 2
    assert "wrong schema" in capsys.readouterr().err
    assert main(["data", "check", f"parquet:{tmp_path / 'nope'}"]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")  # no region lookup over the network
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["data", "check", "parquet:s3://ofa-platform-no-such-bucket/imagenet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s3://ofa-platform-no-such-bucket/imagenet" in err[0]


def test_sharded_dataset_loads_like_one_file(tmp_path: Path) -> None:
    """load_dataset on shards: the same seeded split over the global row order, heads equal
    to the first rows of the full load, mixed sizes centre-cropped to the largest
    resolution."""
    import torch

    from ofa_platform.datasets import DataSpec, load_dataset, train_size

    out = _convert(tmp_path, resize=None)  # images of different widths
    spec = DataSpec(kind="parquet", path=out, name="pq", resolutions=(12, 16))
    full = load_dataset(spec, seed=2, val_fraction=0.2)
    assert (full.n_train, full.n_val, full.n_classes) == (14, 4, 3)
    assert full.train.images.shape[1:] == (3, 16, 16) and full.test is not None
    head = load_dataset(spec, seed=2, val_fraction=0.2, heads=(3, 2))
    assert torch.equal(head.train.images, full.train.images[:3])
    assert torch.equal(head.val.labels, full.val.labels[:2])
    assert train_size(spec) == 16  # 18 rows less the 10% validation split


def test_epoch_plan_is_disjoint_equal_and_seeded() -> None:
    from ofa_platform.data.raydata import epoch_sequence, rank_pieces

    groups = [(0, 0, 0, 50), (0, 1, 50, 50), (1, 0, 100, 37)]
    keep = np.ones(137, dtype=bool)
    keep[::10] = False  # the validation rows
    def rows(epoch: int, rank: int, world: int = 2, batch: int = 8) -> list[int]:
        return [p["first"] + o for p in rank_pieces(groups, keep, seed=3, epoch=epoch,
                                                    rank=rank, world=world, batch_size=batch,
                                                    max_piece_rows=16)
                for o in p["offsets"]]

    r0, r1 = rows(0, 0), rows(0, 1)
    assert len(r0) == len(r1) == 56  # 123 kept rows / 2 ranks = 61, whole batches of 8
    assert not set(r0) & set(r1) and all(keep[i] for i in r0 + r1)
    assert rows(0, 0) == r0  # a resumed run (same seed and epoch) reads the same order
    assert rows(1, 0) != r0  # a new epoch, a new order
    seq, _ = epoch_sequence(groups, keep, 3, 0)
    assert sorted(seq.tolist()) == np.flatnonzero(keep).tolist()  # every row once per epoch
    every = rows(0, 0, world=1, batch=1)
    assert sorted(every) == np.flatnonzero(keep).tolist()


def test_loader_choice_by_size_and_layout() -> None:
    from ofa_platform.data.raydata import MEMORY_FRACTION, choose_loader, decoded_bytes

    gb = 1024**3
    cifar = decoded_bytes(45_000, 32)
    assert choose_loader("auto", sharded=False, rows=45_000, resolution=32, workers=2,
                         memory_bytes=16 * gb) == "memory"
    assert choose_loader("auto", sharded=True, rows=10, resolution=32, workers=2,
                         memory_bytes=16 * gb) == "ray-data"
    tiny_ram = int(cifar * 2 / MEMORY_FRACTION) - 1
    assert choose_loader("auto", sharded=False, rows=45_000, resolution=32, workers=2,
                         memory_bytes=tiny_ram) == "ray-data"
    assert choose_loader("memory", sharded=False, rows=10**9, resolution=224, workers=8,
                         memory_bytes=gb) == "memory"
    with pytest.raises(UserError, match="--data-loader"):
        choose_loader("stream", sharded=False, rows=1, resolution=1, workers=1, memory_bytes=1)


def test_training_request_validates_shards_before_anything_runs(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ofa_platform.train.runner import TrainRequest, prepare

    out = _convert(tmp_path)
    base = dict(schedule="ofa", data=f"parquet:{out}", workers=2, recal_images=4, val_limit=4,
                tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    prep = prepare(TrainRequest(**base))
    assert prep.engine.data_loader == "ray-data" and prep.n_train == 16
    with pytest.raises(UserError, match="--data-loader memory reads DIR/train.parquet"):
        prepare(TrainRequest(**base, data_loader="memory"))
    with pytest.raises(UserError, match="streams Parquet datasets, not synthetic"):
        prepare(TrainRequest(**{**base, "data": "synthetic:64"}, data_loader="ray-data"))
    shard = sorted((out / "train").glob("*.parquet"))[2]
    t = pq.read_table(shard)
    labels = t.column("label").to_pylist()
    labels[5] = 3
    pq.write_table(t.set_column(1, "label", pa.array(labels, pa.int32())), shard)
    with pytest.raises(UserError, match=rf"{shard.name} row 5: label 3 outside 0..2"):
        prepare(TrainRequest(**base))
    assert not (tmp_path / "m.db").exists()  # no MLflow run was created


@pytest.mark.slow
def test_stream_on_ray_is_disjoint_deterministic_and_cropped(ray_local: object,
                                                             tmp_path: Path) -> None:
    import torch

    from ofa_platform.data.raydata import RayDataStream
    from ofa_platform.datasets import DataSpec

    out = _convert(tmp_path, resize=None)
    spec = DataSpec(kind="parquet", path=out, name="pq", resolutions=(16,))

    def epoch(rank: int, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = RayDataStream(spec, subset=None, seed=1, size=16, rank=rank, world=2,
                          batch_size=4, task_cpus=0.5)
        xs, idx = [], []
        for b in s.dataset(e).iter_torch_batches(batch_size=4):
            xs.append(b["image"])
            idx.append(b["index"])
        return torch.cat(xs), torch.cat(idx)

    x0, i0 = epoch(0, 0)
    x1, i1 = epoch(1, 0)
    assert x0.shape == (8, 3, 16, 16) and x0.dtype == torch.uint8
    assert len(i0) == len(i1) == 8 and not set(i0.tolist()) & set(i1.tolist())
    again_x, again_i = epoch(0, 0)
    assert torch.equal(again_i, i0) and torch.equal(again_x, x0)  # same rows, same crops
    _, later = epoch(0, 1)
    assert not torch.equal(later, i0)


@pytest.mark.slow
def test_an_epoch_started_ahead_streams_the_same_batches(ray_local: object,
                                                          tmp_path: Path) -> None:
    """``start(epoch)`` (the engine calls it while the previous epoch is evaluated) changes
    when an epoch streams, not what: same images, labels and flips; an epoch started but
    never read stops its thread when another starts."""
    import torch

    from ofa_platform.data.raydata import RayDataStream
    from ofa_platform.datasets import DataSpec

    out = _convert(tmp_path, resize=None)
    spec = DataSpec(kind="parquet", path=out, name="pq", resolutions=(16,))
    stream = RayDataStream(spec, subset=None, seed=1, size=16, rank=0, world=2, batch_size=4,
                           task_cpus=0.5)
    plain = list(stream.batches(1))
    stream.start(1)
    ahead = list(stream.batches(1))
    assert len(plain) == len(ahead) == 2
    for (x, y), (xa, ya) in zip(plain, ahead):
        assert torch.equal(x, xa) and torch.equal(y, ya)
    stream.start(2)
    unread = stream._ahead
    assert unread is not None
    stream.start(3)
    unread._thread.join(timeout=120)
    assert not unread._thread.is_alive()
    stream.close()


@pytest.mark.slow
def test_streamed_training_job_finishes(ray_local: object, shared_data: Path, mlflow_uri: str,
                                        tmp_path: Path) -> None:
    """CIFAR-10 Parquet through Ray Data end to end: 2 workers, the loader recorded, the
    second epoch started while the first is evaluated."""
    from mlflow.tracking import MlflowClient

    from ofa_platform.train.runner import TrainRequest, prepare, run_training

    recipe = tmp_path / "streamed.yaml"
    recipe.write_text("name: streamed\nspace: ofa_mbv3\nphases:\n  - name: teacher\n"
                      "    epochs: 2\n    lr: 0.5\n    sampling: max\n"
                      "    restrict: {kernels: [3], ratios: [3], depths: [2]}\n"
                      "    init: scratch\n")
    prep = prepare(TrainRequest(
        schedule=str(recipe), data="cifar10", workers=2, cpus_per_worker=0.5, subset=48,
        batch_size=8, storage_path=str(tmp_path / "ray"), tracking_uri=mlflow_uri,
        recal_images=8, val_limit=8, experiment="streamed", data_loader="ray-data"))
    out = run_training(prep, progress=lambda s: None)
    assert out.status == "FINISHED", out.error
    run = MlflowClient(mlflow_uri).get_run(out.run_id)
    assert run.data.params["data_loader"] == "ray-data"
    assert run.data.metrics["steps"] == 2  # 43 training rows / 2 ranks -> 2 batches of 8
    assert run.data.metrics["images_per_s"] > 0
    assert run.data.metrics["epochs_run"] == 2


def test_png_bytes_helper_is_decodable() -> None:
    """The fixtures above write PNG; the stream decodes any format torchvision reads."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (5, 4)).save(buf, format="PNG")
    from ofa_platform.data.shards import decode_fixed

    assert tuple(decode_fixed([buf.getvalue()], ["x"], 8).shape) == (1, 3, 8, 8)
