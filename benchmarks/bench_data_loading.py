"""Ray Data streaming against in-memory decoding: training speed and worker memory.

    .venv/bin/python benchmarks/bench_data_loading.py [--subset 4000] [--epochs 3]
        [--repeats 2] [--small-gb 0.4] [--large-gb 4.0]

Two measurements, each side by side in one run:

1. **Speed** (goal: Ray Data / memory >= 0.95). The same training job (``run_training``, 2
   workers, CIFAR-10 Parquet from ``../shared/data``) with ``--data-loader memory`` and
   ``--data-loader ray-data``, alternating (memory, ray-data, ray-data, memory, ...). The
   figure is the training images/s the engine measures inside its steps, median over the
   epochs after the first (the first pays for starting Ray Data's task workers), then median
   over repeats.
2. **Memory** (goal: peak RSS per worker at most 1.2x while the data grows 10x). Parquet
   datasets of generated 224 x 224 JPEGs whose decoded size is ``--small-gb`` and
   ``--large-gb`` are written under /tmp (deleted afterwards); a 2-worker Ray Train job
   streams one whole epoch of each (random-resized crops to 128 px) through
   :class:`~ofa_platform.data.raydata.RayDataStream` and every worker reports its peak
   resident set (``ru_maxrss``). The in-memory loader is measured on the small set only: it
   holds the whole decoded set per worker by design, so its growth is the data's.

Results: ``benchmarks/results/bench_data_loading.json``. On a shared machine the absolute
numbers move with the load (the load average is recorded); the ratios are the claim.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RECIPE = """\
name: bench_data
space: ofa_mbv3
phases:
  - name: teacher
    epochs: {epochs}
    lr: 0.5
    sampling: max
    restrict: {{kernels: [3], ratios: [3], depths: [2]}}
    init: scratch
"""


# --------------------------------------------------------------------------- speed
def _train_once(loader: str, args: argparse.Namespace, tmp: Path, uri: str) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    from ofa_platform.train.runner import TrainRequest, prepare, run_training

    prep = prepare(TrainRequest(
        schedule=str(tmp / "bench_data.yaml"), data=args.data, workers=2,
        cpus_per_worker=0.5, subset=args.subset, batch_size=args.batch_size,
        storage_path=str(tmp / "ray"), tracking_uri=uri, recal_images=32, val_limit=32,
        experiment="bench-data", data_loader=loader, max_failures=2))
    out = run_training(prep, progress=lambda s: None)
    if out.status != "FINISHED":
        raise RuntimeError(f"{loader} run failed: {out.error}")
    hist = sorted(MlflowClient(uri).get_metric_history(out.run_id, "images_per_s"),
                  key=lambda h: h.step)
    ips = [h.value for h in hist]
    return {"images_per_s": statistics.median(ips[1:] or ips), "per_epoch": ips,
            "wall_s": out.final_metrics.get("wall_s")}


def bench_speed(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    (tmp / "bench_data.yaml").write_text(RECIPE.format(epochs=args.epochs))
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    runs: dict[str, list[dict[str, Any]]] = {"memory": [], "ray-data": []}
    order = ["memory", "ray-data"]
    for r in range(args.repeats):
        for loader in (order if r % 2 == 0 else order[::-1]):
            res = _train_once(loader, args, tmp, uri)
            runs[loader].append(res)
            print(f"[speed] {loader:8s} {res['images_per_s']:.1f} img/s "
                  f"(epochs {[round(x, 1) for x in res['per_epoch']]})", flush=True)
    med = {k: statistics.median(x["images_per_s"] for x in v) for k, v in runs.items()}
    return {"median_images_per_s": med, "ratio_raydata_over_memory": med["ray-data"]
            / med["memory"], "runs": runs}


# --------------------------------------------------------------------------- memory
def generate_parquet(out: Path, decoded_gb: float, *, size: int = 224, shards: int = 8,
                     seed: int = 0, pool: int = 256) -> int:
    """Write ``train/part-*.parquet`` of generated JPEGs decoding to ``decoded_gb`` GB.
    ``pool`` distinct images are encoded and repeated (what is measured is memory against
    the decoded size, not content; encoding 26,000 images took half an hour on the loaded
    machine). Returns the number of images."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from ofa_platform.data.shards import ROW_GROUP_ROWS
    from ofa_platform.datasets import make_synthetic

    n = int(decoded_gb * 1e9 / (3 * size * size))
    blobs, labels = [], []
    for a in range(0, pool, 64):
        imgs, labs = make_synthetic(min(64, pool - a), size=size, seed=seed + a)
        for img, lab in zip(imgs, labs):
            buf = io.BytesIO()
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=85)
            blobs.append(buf.getvalue())
            labels.append(int(lab))
    classes = [f"class{i}" for i in range(10)]
    per = -(-n // shards)
    done = 0
    for s in range(shards):
        rows = min(per, n - done)
        idx = [(done + i) % pool for i in range(rows)]
        table = pa.table({"image": pa.array([blobs[i] for i in idx], type=pa.binary()),
                          "label": pa.array([labels[i] for i in idx], type=pa.int32())})
        table = table.replace_schema_metadata({"classes": ",".join(classes)})
        path = out / "train" / f"part-{s:05d}-of-{shards:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path, row_group_size=ROW_GROUP_ROWS)
        done += rows
    return n


def _stream_epoch(config: dict[str, Any]) -> None:
    """Ray Train loop: one epoch of the stream (or the in-memory decode), then report this
    worker's peak RSS."""
    import resource

    import ray.train

    from ofa_platform.data.raydata import RayDataStream
    from ofa_platform.datasets import iterate_batches, load_dataset, parse_data_spec

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    spec = parse_data_spec(config["data"])
    images = 0
    t0 = time.perf_counter()
    if config["loader"] == "ray-data":
        stream = RayDataStream(spec, subset=None, seed=0, size=config["size"], rank=rank,
                               world=world, batch_size=64, task_cpus=0.5)
        for x, _ in stream.batches(0):
            images += len(x)
    else:
        data = load_dataset(spec, seed=0)
        for x, _ in iterate_batches(data, batch_size=64, resolution=config["size"],
                                    train=True, seed=0, epoch=0, rank=rank, world_size=world):
            images += len(x)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    row = {"peak_rss_mb": peak_kb / 1024, "images": images,
           "seconds": time.perf_counter() - t0, "rank": rank}
    # every rank's row in a file (same machine): Ray Train keeps only rank 0's report
    Path(config["out_dir"], f"rank{rank}.json").write_text(json.dumps(row))
    ray.train.report(row)


def _peak_rss(data: str, loader: str, size: int, tmp: Path) -> dict[str, Any]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    out_dir = Path(tempfile.mkdtemp(prefix="rss-", dir=tmp))
    trainer = TorchTrainer(
        _stream_epoch, train_loop_config={"data": data, "loader": loader, "size": size,
                                          "out_dir": str(out_dir)},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        run_config=RunConfig(name=f"mem-{loader}-{int(time.time() * 1000)}",
                             storage_path=str(tmp / "ray")))
    result = trainer.fit()
    if result.error:
        raise RuntimeError(result.error)
    reports = [json.loads(p.read_text()) for p in sorted(out_dir.glob("rank*.json"))]
    return {"peak_rss_mb_per_worker": [r["peak_rss_mb"] for r in reports],
            "images_per_worker": [r["images"] for r in reports],
            "seconds": [r["seconds"] for r in reports]}


def bench_memory(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, gb in (("small", args.small_gb), ("large", args.large_gb)):
        root = Path(tempfile.mkdtemp(prefix=f"ofa-bench-{label}-", dir="/tmp"))
        try:
            t0 = time.perf_counter()
            n = generate_parquet(root, gb, size=args.image_size, seed=args.seed)
            print(f"[memory] generated {label}: {n} images ({gb} GB decoded) in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
            out[label] = {"decoded_gb": gb, "images": n,
                          "ray-data": _peak_rss(f"parquet:{root}", "ray-data",
                                                args.stream_size, tmp)}
            print(f"[memory] {label} ray-data: {out[label]['ray-data']}", flush=True)
            if label == "small":
                # the in-memory loader reads DIR/train.parquet: give it one file
                single = root / "single"
                single.mkdir()
                _concat(root / "train", single / "train.parquet")
                out[label]["memory"] = _peak_rss(f"parquet:{single}", "memory",
                                                 args.stream_size, tmp)
                print(f"[memory] {label} memory: {out[label]['memory']}", flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    peak = {k: max(out[k]["ray-data"]["peak_rss_mb_per_worker"]) for k in ("small", "large")}
    out["ratio_large_over_small_raydata"] = peak["large"] / peak["small"]
    out["data_growth"] = args.large_gb / args.small_gb
    return out


def _concat(shard_dir: Path, dest: Path) -> None:
    import pyarrow.parquet as pq

    files = sorted(shard_dir.glob("*.parquet"))
    schema = pq.ParquetFile(files[0]).schema_arrow
    with pq.ParquetWriter(dest, schema) as w:
        for f in files:
            w.write_table(pq.read_table(f))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="cifar10")
    p.add_argument("--subset", type=int, default=4000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--small-gb", type=float, default=0.4)
    p.add_argument("--large-gb", type=float, default=4.0)
    p.add_argument("--image-size", type=int, default=224, help="generated images (px)")
    p.add_argument("--stream-size", type=int, default=128, help="training crops (px)")
    p.add_argument("--seed", type=int, default=0, help="generated images")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                        "bench_data_loading.json"))
    args = p.parse_args(argv)
    import ray

    for attempt in range(5):  # a node gets 30 s to register: a busy shared machine misses it
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            break
        except Exception:  # noqa: BLE001 - "timed out during startup": try again
            ray.shutdown()
            if attempt == 4:
                raise
    tmp = Path(tempfile.mkdtemp(prefix="ofa-bench-data-"))
    load_before = os.getloadavg()
    result: dict[str, Any] = {"benchmark": "bench_data_loading", "args": vars(args),
                              "machine": {"python": platform.python_version(),
                                          "cpus": os.cpu_count(),
                                          "loadavg_before": load_before}}
    try:
        if not args.skip_speed:
            result["speed"] = bench_speed(args, tmp)
        if not args.skip_memory:
            result["memory"] = bench_memory(args, tmp)
    finally:
        result["machine"]["loadavg_after"] = os.getloadavg()
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    from ofa_platform.files import atomic_path

    with atomic_path(args.out) as path:
        path.write_text(json.dumps(result, indent=2, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "args"}, indent=2,
                     default=str)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
