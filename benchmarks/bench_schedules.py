"""Each schedule on CIFAR-10 at an equal small budget: subnet accuracies and device-hours.

    .venv/bin/python benchmarks/bench_schedules.py [--epochs 12] [--subset 2000] [--workers 2]

Every schedule (default: ofa, compofa, deps, bignas) is scaled to about the same number of
epochs (``--epochs``; each phase keeps at least one, so a recipe with more phases than that
budget runs one epoch per phase), then trained as a real Ray Train job with the same workers,
data subset, batch size and seed, one after the other in one run. Printed side by side: the
accuracy of the smallest, a middle and the largest subnet after the last epoch, the
device-hours spent, measured images/s per device, and the device-hours the published recipe
would take at that speed (all from the jobs' MLflow runs). Ratios are against the first
schedule. Results go to ``benchmarks/results/bench_schedules.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--schedules", default="ofa,compofa,deps,bignas")
    p.add_argument("--data", default="cifar10")
    p.add_argument("--epochs", type=int, default=12, help="epoch budget per schedule")
    p.add_argument("--subset", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-limit", type=int, default=500)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                        "bench_schedules.json"))
    args = p.parse_args()

    import ray
    from mlflow.tracking import MlflowClient

    from ofa_platform.train.runner import TrainRequest, prepare, run_training
    from ofa_platform.train.schedule import load_schedule

    ray.init(num_cpus=max(2, args.workers), include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_sched_") as d:
        uri = f"sqlite:///{Path(d) / 'mlflow.db'}"
        for name in args.schedules.split(","):
            full = load_schedule(name)
            scale = min(1.0, args.epochs / full.total_epochs)
            req = TrainRequest(schedule=name, data=args.data, workers=args.workers,
                               epoch_scale=scale, subset=args.subset,
                               batch_size=args.batch_size, seed=args.seed,
                               storage_path=str(Path(d) / "ray"), tracking_uri=uri,
                               val_limit=args.val_limit, experiment="bench_schedules",
                               max_failures=0)
            prep = prepare(req)
            out = run_training(prep, progress=lambda s: None)
            m = MlflowClient(uri).get_run(out.run_id).data.metrics
            row = {"schedule": name, "status": out.status, "space": prep.space,
                   "epochs": prep.schedule.total_epochs, "phases": len(prep.schedule.phases),
                   **{k: m.get(k, float("nan")) for k in (
                       "acc_smallest", "acc_middle", "acc_largest", "device_hours", "dollars",
                       "energy_kwh", "co2_kg", "images_per_s_per_device",
                       "projected_full_device_hours")}}
            rows.append(row)
            print(f"{name}: {out.status} {row['epochs']} epochs, "
                  f"acc S/M/L {row['acc_smallest']:.3f}/{row['acc_middle']:.3f}/"
                  f"{row['acc_largest']:.3f}, {row['device_hours']:.4f} device-hours"
                  + (f" ({out.error})" if out.error else ""), flush=True)
    ray.shutdown()
    base = rows[0]
    print(f"\nSchedules at an equal budget of ~{args.epochs} epochs, {args.subset} images, "
          f"{args.workers} workers (ratios vs {base['schedule']}):")
    print(f"{'schedule':10s} {'epochs':>6s} {'acc_S':>6s} {'acc_M':>6s} {'acc_L':>6s} "
          f"{'dev-h':>8s} {'x':>5s} {'img/s/dev':>9s} {'full-recipe dev-h':>18s} {'x':>5s}")
    for r in rows:
        print(f"{r['schedule']:10s} {r['epochs']:6d} {r['acc_smallest']:6.3f} "
              f"{r['acc_middle']:6.3f} {r['acc_largest']:6.3f} {r['device_hours']:8.4f} "
              f"{r['device_hours'] / base['device_hours']:5.2f} "
              f"{r['images_per_s_per_device']:9.1f} "
              f"{r['projected_full_device_hours']:18.1f} "
              f"{r['projected_full_device_hours'] / base['projected_full_device_hours']:5.2f}")
    payload = {"benchmark": "bench_schedules", "args": vars(args), "rows": rows,
               "machine": {"python": platform.python_version(), "node": platform.node()}}
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
