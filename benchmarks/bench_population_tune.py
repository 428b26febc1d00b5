"""Population evaluation: Ray Tune with 2 workers against 1, and Tune against a bare actor pool.

    .venv/bin/python benchmarks/bench_population_tune.py [--subnets 32] [--data cifar10]
        [--resolution 32] [--calib-images 200] [--val-images 200] [--repeats 3]

The same population of subnets (a CompOFA MobileNetV3 supernet, small-input variant) is
evaluated (BN recalibration + top-1) three ways, side by side in one run: Tune with 1 worker,
Tune with 2 workers (goal: 1.6x or better on 2 cores), and a bare Ray ``ActorPool`` of 2
actors running the same :class:`ShardEvaluator` on the same shards (goal: Tune's overhead at
most 5%). Every timing includes putting the weights in the object store and starting the
actors, on both sides.

Tune's overhead is almost all fixed per population: its actors are fresh processes that
import ``ray.tune`` (about a second on this machine) before building the supernet, where a
bare actor imports only what the evaluator needs; a reused trial adds ~15 ms. So the overhead
*fraction* depends on how long the population takes. The default workload is CIFAR-10 at
32 px with 200 calibration and 200 validation images per subnet — a tenth of OFA's 2000
calibration images, so still lighter than a real search's subnets; ``--data synthetic:64
--resolution 16 --calib-images 32 --val-images 32`` shows the tiny case where the fixed cost
dominates. Results go to ``benchmarks/results/bench_population_tune.json``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subnets", type=int, default=32)
    p.add_argument("--data", default="cifar10", help="dataset recipe or spec")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--calib-images", type=int, default=200)
    p.add_argument("--val-images", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                        "bench_population_tune.json"))
    args = p.parse_args()

    import ray
    from ray.util import ActorPool

    from ofa_platform.search.population import (
        EvalSetup,
        PopulationEvaluator,
        ShardEvaluator,
        plan_shards,
    )
    from search_spaces.registry import create_supernet
    from search_spaces.spaces import get_space

    class _PoolEvaluator(ShardEvaluator):
        def evaluate_shard(self, index: int, shard: list[dict]) -> tuple[int, list[float]]:
            return index, self.evaluate(shard)

    space = get_space("compofa_mbv3").with_resolutions((args.resolution,))
    setup = EvalSetup(args.data, calib_images=args.calib_images,
                      calib_batch=min(200, args.calib_images), eval_batch=200,
                      val_subset=args.val_images, seed=0)
    net = create_supernet(space, n_classes=10, small_input=True)
    probe = ShardEvaluator(dict(net.spec), net.state_dict(), setup)
    rng = random.Random(0)
    archs = list(dict.fromkeys(space.sample(rng) for _ in range(args.subnets * 3)))
    archs = archs[:args.subnets]
    from ofa_platform.search.predictor import single_thread

    with single_thread():  # as in a 1-CPU actor
        probe.evaluate_one(archs[0])  # the first call pays one-time costs
        t0 = time.perf_counter()
        probe.evaluate_one(archs[1])
        per = time.perf_counter() - t0
    print(f"{len(archs)} subnets, {per:.2f} s per subnet (probe)")

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    store = REPO / ".ofa_cache" / "bench_tune"

    def tune(workers: int) -> list[float]:
        ev = PopulationEvaluator(net, setup, workers=workers, cache=None, storage_dir=store,
                                 seconds_per_subnet=per)
        return ev.evaluate(archs)

    spec = dict(net.spec)
    planned = plan_shards(archs, 2, per, PopulationEvaluator(net, setup).subnet_cost)
    shards = [[a.to_dict() for a in shard] for shard in planned]  # the shards Tune gets

    def pool() -> list[float]:  # the weights go through the object store, as Tune's do
        state_ref = ray.put({k: v.detach().cpu() for k, v in net.state_dict().items()})
        actor = ray.remote(num_cpus=1)(_PoolEvaluator)
        actors = [actor.remote(spec, state_ref, setup) for _ in range(2)]
        # unordered: an actor gets the next shard as soon as it is free (ordered ``map``
        # holds a free actor back until the results before its own have been collected)
        jobs = ActorPool(actors).map_unordered(
            lambda a, i: a.evaluate_shard.remote(i, shards[i]), range(len(shards)))
        out = dict(jobs)
        for a in actors:
            ray.kill(a)
        by_key = {a.key: acc for i, shard in enumerate(planned) for a, acc in zip(shard, out[i])}
        return [by_key[a.key] for a in archs]

    scale = harness.compare("Tune 2 workers vs 1 (ours=2, reference=1)", lambda: tune(2),
                            lambda: tune(1), repeats=args.repeats, warmup=0,
                            work=len(archs), unit="subnets")
    overhead = harness.compare("Tune 2 workers vs bare ActorPool of 2 (reference=pool)",
                               lambda: tune(2), pool, repeats=args.repeats, warmup=0,
                               work=len(archs), unit="subnets")
    same = [round(a, 6) for a in overhead.ours.result] == [round(a, 6) for a in
                                                          overhead.reference.result]
    scale.notes["speedup_2_over_1"] = scale.ratio
    overhead.notes["tune_overhead_fraction"] = 1.0 / overhead.ratio - 1.0
    overhead.notes["tune_extra_s"] = (overhead.ours.median_wall_s
                                      - overhead.reference.median_wall_s)
    overhead.notes["same_accuracies"] = same
    overhead.notes["shards"] = len(shards)
    print(harness.format_table([scale, overhead]))
    print(f"2 workers / 1 worker speed-up: {scale.ratio:.2f}x (goal >= 1.6x)")
    print(f"Tune overhead over a bare actor pool: {100 * (1 / overhead.ratio - 1):.1f}% "
          f"(goal <= 5%), {overhead.notes['tune_extra_s']:.2f} s more per population; "
          f"same accuracies: {same}; {len(shards)} shards")
    payload = harness.results_payload([scale, overhead], meta={
        "subnets": len(archs), "data": args.data, "resolution": args.resolution,
        "seconds_per_subnet": per,
        "calib_images": args.calib_images, "val_images": args.val_images})
    print(f"wrote {harness.write_results(Path(args.out), payload)}")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
