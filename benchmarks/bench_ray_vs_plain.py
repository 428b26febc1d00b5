"""Ray Train with 1 worker against the same training loop in plain PyTorch (goal: >= 0.95).

    .venv/bin/python benchmarks/bench_ray_vs_plain.py [--epochs 4] [--subset 400] [--repeats 2]

Both sides run the engine's own loop (``ofa_platform.train.engine``) on the same recipe, data,
batch size and thread count; the plain side calls it in this process with no Ray, no MLflow
callback; the Ray side is a full ``run_training`` job (TorchTrainer, 1 worker, per-epoch
report + checkpoint, MLflow from the controller). Runs alternate (plain, Ray, Ray, plain, ...)
so that a machine that slows down hurts both sides alike. Three images/s ratios, Ray / plain:

- ``train``: inside the training steps only (what the loop itself measures);
- ``steady``: epochs per second between the first and the last epoch's report, i.e. training,
  BN recalibration, evaluation, checkpoint and the report itself (the headline; goal 0.95);
- ``end_to_end``: including starting the workers and loading the data.

Results go to ``benchmarks/results/bench_ray_vs_plain.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RECIPE = """\
name: bench_teacher
space: {space}
phases:
  - name: teacher
    epochs: {epochs}
    lr: 0.5
    sampling: max
    init: scratch
"""


def _schedule(tmp: Path, space: str, epochs: int):  # noqa: ANN202 - Schedule
    from ofa_platform.train.schedule import load_schedule

    path = tmp / "bench_teacher.yaml"
    path.write_text(RECIPE.format(space=space, epochs=epochs))
    return load_schedule(path)


def _throughputs(images_per_epoch: float, stamps: list[float], train_ips: list[float],
                 wall: float, epochs: int) -> dict[str, float]:
    steady = ((len(stamps) - 1) * images_per_epoch / (stamps[-1] - stamps[0])
              if len(stamps) > 1 else float("nan"))
    return {"train": statistics.median(train_ips[1:] or train_ips), "steady": steady,
            "end_to_end": epochs * images_per_epoch / wall}


def run_plain(args: argparse.Namespace, schedule, tmp: Path) -> dict[str, float]:  # noqa: ANN001
    import torch

    from ofa_platform.train.engine import EngineConfig, plain_env
    from ofa_platform.train.engine import run_plain as loop

    torch.set_num_threads(args.threads)
    stamps: list[float] = []

    def report(metrics: dict, directory: str | None) -> None:
        import shutil

        stamps.append(time.time())
        if directory:
            shutil.rmtree(directory, ignore_errors=True)

    cfg = EngineConfig(schedule=schedule, space=args.space, data=args.data,
                       batch_size=args.batch_size, seed=0, subset=args.subset,
                       recal_images=args.batch_size, val_limit=args.batch_size)
    t0 = time.time()
    metrics = loop(cfg, plain_env(report=report))
    wall = time.time() - t0
    per_epoch = metrics[0]["steps"] * args.batch_size
    return _throughputs(per_epoch, stamps, [m["images_per_s"] for m in metrics], wall,
                        len(metrics))


def run_ray(args: argparse.Namespace, schedule, tmp: Path) -> dict[str, float]:  # noqa: ANN001
    from mlflow.tracking import MlflowClient

    from ofa_platform.train.runner import TrainRequest, prepare, run_training

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    req = TrainRequest(schedule=str(tmp / "bench_teacher.yaml"), data=args.data,
                       space=args.space, workers=1, cpus_per_worker=args.threads,
                       batch_size=args.batch_size, subset=args.subset, seed=0,
                       storage_path=str(tmp / "ray"), tracking_uri=uri,
                       recal_images=args.batch_size, val_limit=args.batch_size,
                       experiment="bench_ray_vs_plain", max_failures=0)
    prep = prepare(req)
    t0 = time.time()
    out = run_training(prep, progress=lambda s: None)
    wall = time.time() - t0
    if out.status != "FINISHED":
        raise SystemExit(f"Ray run failed: {out.error}")
    client = MlflowClient(uri)
    hist = sorted(client.get_metric_history(out.run_id, "images_per_s"), key=lambda h: h.step)
    steps = client.get_metric_history(out.run_id, "steps")[0].value
    stamps = [h.timestamp / 1000 for h in hist]
    return _throughputs(steps * args.batch_size, stamps, [h.value for h in hist], wall,
                        len(hist))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="ofa_mbv3")
    p.add_argument("--data", default="cifar10")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--subset", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2, help="runs per side (interleaved)")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                        "bench_ray_vs_plain.json"))
    args = p.parse_args()

    import ray

    ray.init(num_cpus=max(2, args.threads), include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    sides: dict[str, list[dict[str, float]]] = {"plain": [], "ray": []}
    order = ["plain", "ray", "ray", "plain"] * args.repeats
    order = order[: 2 * args.repeats]
    with tempfile.TemporaryDirectory(prefix="bench_rvp_") as d:
        tmp = Path(d)
        schedule = _schedule(tmp, args.space, args.epochs)
        for i, side in enumerate(order):
            fn = run_plain if side == "plain" else run_ray
            r = fn(args, schedule, tmp)
            sides[side].append(r)
            print(f"run {i + 1}/{len(order)} {side:5s} " +
                  " ".join(f"{k} {v:.2f} img/s" for k, v in r.items()), flush=True)
    ray.shutdown()
    med = {s: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
           for s, runs in sides.items()}
    ratios = {k: med["ray"][k] / med["plain"][k] for k in med["plain"]}
    print(f"\nRay Train (1 worker) / plain PyTorch, images/s, median of {args.repeats} each:")
    for k, v in ratios.items():
        goal = "  (goal >= 0.95)" if k == "steady" else ""
        print(f"  {k:11s} {v:.3f}  ray {med['ray'][k]:.2f} plain {med['plain'][k]:.2f}{goal}")
    payload = {"benchmark": "bench_ray_vs_plain", "args": vars(args), "median": med,
               "ratios_ray_over_plain": ratios, "runs": sides,
               "machine": {"python": platform.python_version(), "cpu": platform.processor(),
                           "node": platform.node()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(args.out).with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(payload, indent=2))
    tmp_out.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
